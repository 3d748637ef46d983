"""A case uploaded as three single-sequence series (one upload per sequence), combined slice by
slice: by hand on synthetic series, and with the shipped models on a real LGG case."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from brainloc.casework import analyze_sequences, analyze_uploads
from brainloc.scans import (
    ALL_SEQUENCES,
    COMBINED_NOTE,
    SINGLE_SEQUENCE_NOTE,
    ScanError,
    combine_sequences,
    read_scan,
)
from tests.brainloc.conftest import LGG_CASE
from tests.brainloc.scan_factory import encode_tiff, synthetic_slice


def _case(n_slices: int = 3, size=(64, 64), seed_base: int = 0) -> np.ndarray:
    return np.stack([synthetic_slice(size, seed=seed_base + k) for k in range(n_slices)])


def _split(volume: np.ndarray) -> dict[str, bytes]:
    """One grey multi-page TIFF per model channel."""
    return {
        name: encode_tiff(np.ascontiguousarray(volume[..., channel]))
        for channel, name in enumerate(ALL_SEQUENCES)
    }


def _series(volume: np.ndarray):
    return {name: read_scan(data, f"{name}.tif") for name, data in _split(volume).items()}


def test_three_grey_series_become_the_three_channels_in_order():
    volume = _case()
    series = _series(volume)
    assert all(scan.single_sequence for scan in series.values())
    combined = combine_sequences(series)
    np.testing.assert_array_equal(combined.slices, volume)
    assert combined.sequences_present == ALL_SEQUENCES and not combined.single_sequence
    assert combined.names == series["FLAIR"].names
    assert combined.notes == (COMBINED_NOTE,)  # the single-sequence notes no longer apply
    assert SINGLE_SEQUENCE_NOTE in series["FLAIR"].notes


def test_series_that_do_not_match_are_refused_with_the_reason():
    volume = _case()
    series = _series(volume)
    shorter = series | {"post-contrast": _series(volume[:2])["post-contrast"]}
    with pytest.raises(ScanError, match="post-contrast series has 2 slice.* FLAIR 3"):
        combine_sequences(shorter)
    smaller = series | {"pre-contrast": _series(_case(size=(64, 48)))["pre-contrast"]}
    with pytest.raises(ScanError, match="pre-contrast slices are 64×48 pixels"):
        combine_sequences(smaller)
    spaced = {name: replace(scan, spacing_mm=(0.9, 0.9)) for name, scan in series.items()}
    spaced["post-contrast"] = replace(spaced["post-contrast"], spacing_mm=(1.2, 1.2))
    with pytest.raises(ScanError, match="pixel spacing of .*1.2.* co-registered"):
        combine_sequences(spaced)
    three_channel = series | {"FLAIR": read_scan(encode_tiff(volume), "case.tif")}
    with pytest.raises(ScanError, match="FLAIR upload holds all three sequences"):
        combine_sequences(three_channel)
    with pytest.raises(ScanError, match="pre-contrast series is missing"):
        combine_sequences({k: v for k, v in series.items() if k != "pre-contrast"})
    # Spacing known for only some series is no reason to refuse.
    partly = series | {"FLAIR": replace(series["FLAIR"], spacing_mm=(0.9, 0.9))}
    assert combine_sequences(partly).spacing_mm == (0.9, 0.9)


def test_analyze_sequences_checks_every_upload_before_analysing(tiny_pipeline):
    parts = {name: [(f"{name}.tif", data)] for name, data in _split(_case()).items()}
    with pytest.raises(ScanError, match="choose the post-contrast file"):
        analyze_sequences(tiny_pipeline, parts | {"post-contrast": []})
    two_scans = parts | {"FLAIR": parts["FLAIR"] * 2}
    with pytest.raises(ScanError, match="FLAIR upload holds 2 separate scans"):
        analyze_sequences(tiny_pipeline, two_scans)
    with pytest.raises(ScanError, match="at most 2 can be analysed"):
        analyze_sequences(tiny_pipeline, parts, max_slices=2)
    outcome = analyze_sequences(tiny_pipeline, parts)
    assert len(outcome.slices) == 3 and outcome.sequences_present == tuple(sorted(ALL_SEQUENCES))
    assert COMBINED_NOTE in outcome.notes
    assert outcome.source_name.startswith("pre-contrast: pre-contrast.tif")


def test_a_real_case_split_into_its_sequences_gives_the_same_result(shipped_pipeline, lgg_dir):
    files = sorted(
        (f for f in lgg_dir.glob(f"{LGG_CASE}_*.tif") if not f.name.endswith("_mask.tif")),
        key=lambda f: int(f.stem.rsplit("_", 1)[1]),
    )
    slices = [(f.name, f.read_bytes()) for f in files]
    whole = analyze_uploads(shipped_pipeline, slices)
    volume = np.stack([s.image for s in whole.slices])
    parts = {name: [(f"{name}.tif", data)] for name, data in _split(volume).items()}
    split = analyze_sequences(shipped_pipeline, parts)
    assert any(s.result.has_tumor for s in whole.slices)  # a case with tumor, not a trivial one
    for one, other in zip(whole.slices, split.slices, strict=True):
        np.testing.assert_array_equal(one.image, other.image)
        assert one.result.tumor_probability == pytest.approx(other.result.tumor_probability)
        assert one.result.has_tumor == other.result.has_tumor
        np.testing.assert_array_equal(one.result.mask, other.result.mask)


def test_dicom_series_must_lie_at_the_same_slice_positions():
    from brainloc.scans import read_uploads
    from tests.brainloc.scan_factory import encode_dicom

    rng = np.random.default_rng(3)

    def series(uid: str, shift: float = 0.0):
        files = [
            (f"{uid}-{k}.dcm", encode_dicom(
                rng.integers(0, 4000, (48, 48)), position_z=5.0 * k + shift, instance=k + 1,
                series_uid=f"1.2.826.0.1.3680043.8.498.{uid}",
            ))
            for k in range(3)
        ]  # fmt: skip
        (scan,) = read_uploads(files)
        return scan

    aligned = {name: series(str(k + 10)) for k, name in enumerate(ALL_SEQUENCES)}
    assert aligned["FLAIR"].positions_mm == ((0.0, 0.0, 0.0), (0.0, 0.0, 5.0), (0.0, 0.0, 10.0))
    assert combine_sequences(aligned).positions_mm == aligned["FLAIR"].positions_mm
    # Same count, size, spacing and distance, but every slice 2.5 mm further: other slices.
    shifted = aligned | {"post-contrast": series("20", shift=2.5)}
    with pytest.raises(ScanError, match="post-contrast slices lie up to 2.5 mm away"):
        combine_sequences(shifted)
    # Within half a millimetre (rounding in headers) is the same slice.
    nudged = aligned | {"pre-contrast": series("21", shift=0.3)}
    combine_sequences(nudged)


def test_nifti_volumes_must_lie_at_the_same_slice_positions():
    import nibabel as nib

    rng = np.random.default_rng(4)

    def volume(shift_z: float = 0.0):
        affine = np.diag([0.9, 0.9, 3.0, 1.0])
        affine[:3, 3] = (-20.0, -30.0, -10.0 + shift_z)
        data = rng.integers(0, 3000, (48, 48, 4)).astype(np.int16)
        return read_scan(nib.Nifti1Image(data, affine).to_bytes(), "sequence.nii")

    aligned = {name: volume() for name in ALL_SEQUENCES}
    assert [p[2] for p in aligned["FLAIR"].positions_mm] == [-10.0, -7.0, -4.0, -1.0]
    combine_sequences(aligned)
    shifted = aligned | {"FLAIR": volume(shift_z=1.5)}
    with pytest.raises(ScanError, match="pre-contrast slices lie up to 1.5 mm away"):
        combine_sequences(shifted)


def test_one_upload_of_several_grey_series_points_to_the_per_sequence_upload(tiny_pipeline):
    from brainloc.casework import SEPARATE_SERIES_NOTE

    files = [(f"{name}.tif", data) for name, data in _split(_case()).items()]
    outcome = analyze_uploads(tiny_pipeline, files)
    assert len(outcome.slices) == 9 and SEPARATE_SERIES_NOTE in outcome.notes
    # A single grey series, or colour slices, get no such note.
    assert SEPARATE_SERIES_NOTE not in analyze_uploads(tiny_pipeline, files[:1]).notes
    colour = [("case.tif", encode_tiff(_case())), ("more.tif", encode_tiff(_case(seed_base=5)))]
    assert SEPARATE_SERIES_NOTE not in analyze_uploads(tiny_pipeline, colour).notes
