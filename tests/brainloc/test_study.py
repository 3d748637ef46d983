"""A study (every series of an examination) in one upload: its pre-contrast, FLAIR and
post-contrast series are recognised by name and analysed as one case."""

from __future__ import annotations

import numpy as np
import pytest

from brainloc.casework import SEPARATE_SERIES_NOTE, analyze_sequences, analyze_uploads
from brainloc.scans import ALL_SEQUENCES, COMBINED_NOTE, ScanError, read_uploads
from brainloc.study import RECOGNISED_PREFIX, sequence_from_text, study_case
from tests.brainloc.conftest import LGG_CASE
from tests.brainloc.scan_factory import (
    encode_nifti,
    encode_pil,
    encode_study,
    encode_tiff,
    encode_zip,
    synthetic_slice,
)


@pytest.mark.parametrize(
    ("text", "sequence"),
    [
        ("AX T2 FLAIR", "FLAIR"),
        ("t2_tirm_tra_dark-fluid", "FLAIR"),
        ("Ax FLAIR +C", "FLAIR"),  # a FLAIR after contrast is still the FLAIR channel
        ("BraTS20_Training_001_flair.nii.gz", "FLAIR"),
        ("AX T1 SE", "pre-contrast"),
        ("t1_mprage_sag_p2_iso", "pre-contrast"),
        ("AX T1 FLAIR", "pre-contrast"),  # T1-weighted FLAIR is a T1 series
        ("BraTS20_Training_001_t1.nii.gz", "pre-contrast"),
        ("AX T1 +C", "post-contrast"),
        ("AX T1 POST GAD", "post-contrast"),
        ("T1W_SE_tra_Gd", "post-contrast"),
        ("Ax T1 FLAIR post", "post-contrast"),
        ("3D SPGR contrast", "post-contrast"),
        ("BraTS20_Training_001_t1ce.nii.gz", "post-contrast"),
        ("t1c.nii.gz", "post-contrast"),
        ("T1 tra KM", "post-contrast"),  # Kontrastmittel
        ("T1 SE ax MDC", "post-contrast"),  # mezzo di contrasto
        ("AX T2 FSE", None),
        ("DWI b1000", None),
        ("ADC", None),
        ("3-Plane Loc", None),
        ("IM0001", None),
        ("patient_12.tif", None),
    ],
)
def test_series_names_say_which_channel_they_are(text, sequence):
    assert sequence_from_text(text) == sequence


def test_a_contrast_agent_in_the_header_makes_a_t1_series_post_contrast():
    assert sequence_from_text("AX T1 SE", contrast_agent=True) == "post-contrast"
    assert sequence_from_text("AX T2 FLAIR", contrast_agent=True) == "FLAIR"
    assert sequence_from_text("DWI", contrast_agent=True) is None


def _volume(n_slices: int = 3, size: int = 48) -> np.ndarray:
    """(N, H, W, 3) uint8 slices, each channel different."""
    return np.stack([synthetic_slice((size, size), seed=k) for k in range(n_slices)])


def _grey(volume: np.ndarray, channel: int) -> np.ndarray:
    return volume[..., channel].astype(np.uint16) * 16  # 12-bit, as a scanner stores it


def _study(volume: np.ndarray, extra: dict | None = None, options: dict | None = None) -> bytes:
    series = {
        "3-Plane Loc": _grey(volume, 1)[:1],
        "AX T1 SE": _grey(volume, 0),
        "AX T2 FLAIR": _grey(volume, 1),
        "DWI b1000": _grey(volume, 1),
        "SAG T1 +C": _grey(volume, 2),  # sagittal: not what the models read
        "AX T1 SE +C": _grey(volume, 2),
        **(extra or {}),
    }
    sagittal = {"SAG T1 +C": {"orientation": (0, 1, 0, 0, 0, -1)}}
    return encode_zip({**encode_study(series, sagittal | (options or {})), "DICOMDIR": b"index"})


def test_a_study_export_becomes_one_case_of_its_three_sequences():
    volume = _volume()
    scans = read_uploads([("study.zip", _study(volume))])
    assert len(scans) == 6 and all(scan.single_sequence for scan in scans)
    (case,), (note,) = study_case(scans)
    assert case.sequences_present == ALL_SEQUENCES
    # Each channel holds its own series, read as that series alone would be.
    by_name = {scan.header.description: scan for scan in scans}
    for channel, name in enumerate(("AX T1 SE", "AX T2 FLAIR", "AX T1 SE +C")):
        np.testing.assert_array_equal(case.slices[..., channel], by_name[name].slices[..., 0])
    assert case.names == by_name["AX T2 FLAIR"].names
    assert COMBINED_NOTE in case.notes
    # What the ZIP skipped is still said, though it rode on a series left out (the localiser).
    assert scans[0].header.description == "3-Plane Loc"
    assert any(
        n.startswith("study.zip: 16 image file(s) read; 1 other file(s)") for n in case.notes
    )
    assert note == (
        f"{RECOGNISED_PREFIX}: pre-contrast 'AX T1 SE', FLAIR 'AX T2 FLAIR', post-contrast "
        "'AX T1 SE +C'; not analysed: '3-Plane Loc', 'DWI b1000', 'SAG T1 +C'"
    )


def test_the_contrast_agent_header_is_named_when_the_description_does_not_say_it():
    volume = _volume()
    series = {"AX T1": _grey(volume, 0), "AX FLAIR": _grey(volume, 1), "AX T1 ": _grey(volume, 2)}
    members = encode_study(series, {"AX T1 ": {"contrast_agent": "GADOTERATE"}})
    scans = read_uploads([("study.zip", encode_zip(members))])
    assert [scan.header.description for scan in scans] == ["AX T1", "AX FLAIR", "AX T1"]
    (case,), (note,) = study_case(scans)
    # Both T1 series have the same name; the one with a contrast agent is post-contrast.
    np.testing.assert_array_equal(case.slices[..., 0], scans[0].slices[..., 0])
    np.testing.assert_array_equal(case.slices[..., 2], scans[2].slices[..., 0])
    assert note.endswith("post-contrast 'AX T1' (contrast agent in its header)")


def test_anything_uncertain_leaves_the_upload_as_it_was_and_says_why():
    volume = _volume()
    # Two FLAIR series (e.g. one repeated after motion): which one is meant is not ours to pick.
    twice = read_uploads([("s.zip", _study(volume, extra={"AX FLAIR repeat": _grey(volume, 1)}))])
    scans, (note,) = study_case(twice)
    assert scans == twice
    assert "more than one series could be the FLAIR series" in note
    assert "'AX T2 FLAIR', 'AX FLAIR repeat'" in note
    # Series that do not overlap (the post-contrast slab 100 mm away): not combined, and why.
    apart = read_uploads([("s.zip", _study(volume, options={"AX T1 SE +C": {"first_z": 100.0}}))])
    scans, (note,) = study_case(apart)
    assert scans == apart
    assert "were recognised but cannot be combined: the pre-contrast and post-contrast " in note
    assert "do not cover any FLAIR slice" in note
    # No post-contrast series at all: nothing recognised as a case, nothing said.
    scans = read_uploads([("s.zip", _study(volume))])
    no_post = [scan for scan in scans if "+C" not in scan.header.description]
    assert study_case(no_post) == (no_post, ())
    # A colour image among them (a perfusion map saved as a picture) is only left out.
    colour = [*scans, *read_uploads([("rCBV.png", encode_pil(volume[0], "PNG"))])]
    (case,), (note,) = study_case(colour)
    assert case.sequences_present == ALL_SEQUENCES and note.endswith(", rCBV.png")
    # Colour slices alone (the Kaggle layout) have nothing to recognise.
    slices = read_uploads([(f"CASE_{k}.tif", encode_tiff(volume[k])) for k in range(3)])
    assert study_case(slices * 3) == (slices * 3, ())


def test_co_registered_nifti_volumes_are_recognised_by_file_name():
    volume = _volume(4)
    files = []
    for suffix, channel in (("t2", 1), ("t1ce", 2), ("flair", 1), ("t1", 0)):
        xyz = _grey(volume, channel).transpose(2, 1, 0).astype(np.int16)
        files.append((f"BraTS_001_{suffix}.nii.gz", encode_nifti(xyz, gz=True)))
    scans = read_uploads(files)
    (case,), (note,) = study_case(scans)
    assert case.sequences_present == ALL_SEQUENCES and case.n_slices == 4
    assert note == (
        f"{RECOGNISED_PREFIX}: pre-contrast BraTS_001_t1.nii.gz, FLAIR BraTS_001_flair.nii.gz, "
        "post-contrast BraTS_001_t1ce.nii.gz; not analysed: BraTS_001_t2.nii.gz"
    )


def _by_sequence(volume: np.ndarray) -> dict[str, list[tuple[str, bytes]]]:
    """The study's three series as "One upload per sequence" takes them, chosen by hand."""
    return {
        name: list(encode_study({"series": _grey(volume, channel)}).items())
        for channel, name in enumerate(ALL_SEQUENCES)
    }


def test_analyze_uploads_analyses_the_recognised_case_once(tiny_pipeline):
    volume = _volume()
    outcome = analyze_uploads(tiny_pipeline, [("study.zip", _study(volume))])
    assert len(outcome.slices) == 3
    assert outcome.sequences_present == tuple(sorted(ALL_SEQUENCES))
    assert any(note.startswith(RECOGNISED_PREFIX) for note in outcome.notes)
    assert SEPARATE_SERIES_NOTE not in outcome.notes
    assert COMBINED_NOTE in outcome.notes
    # The same series given one upload per sequence give the very same slices.
    by_hand = analyze_sequences(tiny_pipeline, _by_sequence(volume))
    for mine, theirs in zip(outcome.slices, by_hand.slices, strict=True):
        np.testing.assert_array_equal(mine.image, theirs.image)
        assert mine.result.tumor_probability == theirs.result.tumor_probability


def test_a_real_case_exported_as_a_study_matches_its_sequences_given_by_hand(
    shipped_pipeline, lgg_dir
):
    files = sorted(
        (f for f in lgg_dir.glob(f"{LGG_CASE}_*.tif") if not f.name.endswith("_mask.tif")),
        key=lambda f: int(f.stem.rsplit("_", 1)[1]),
    )
    import tifffile

    volume = np.stack([tifffile.imread(f) for f in files])
    study = _study(volume)
    outcome = analyze_uploads(shipped_pipeline, [("study.zip", study)])
    by_hand = analyze_sequences(shipped_pipeline, _by_sequence(volume))
    assert len(outcome.slices) == len(files)
    assert any(s.result.has_tumor for s in outcome.slices)
    for mine, theirs in zip(outcome.slices, by_hand.slices, strict=True):
        assert mine.result.tumor_probability == pytest.approx(theirs.result.tumor_probability)
        np.testing.assert_array_equal(mine.result.mask, theirs.result.mask)


def test_series_a_case_cannot_hold_are_left_out_of_a_study_not_refused(monkeypatch):
    from tests.brainloc.scan_factory import encode_dicom

    volume = _volume()
    monkeypatch.setenv("BRAINLOC_MAX_SLICES", "4")
    # A perfusion series: 2 slices × 3 time points in one series is 6 images, over the limit.
    perfusion = np.concatenate([_grey(volume, 1)[:2]] * 3)
    members = encode_study(
        {"AX T1": _grey(volume, 0), "AX FLAIR": _grey(volume, 1), "AX T1 +C": _grey(volume, 2)}
        | {"DSC PERFUSION": perfusion}
    )
    # An enhanced (multi-frame) DICOM file among them is read as a scan of its own.
    members["S09/ENHANCED"] = encode_dicom(
        _grey(volume, 1), series_uid="1.2.826.0.1.3680043.8.498.999", description="ADC"
    )
    scans = read_uploads([("study.zip", encode_zip(members))])
    assert [scan.header.description for scan in scans] == ["AX T1", "AX FLAIR", "AX T1 +C", "ADC"]
    left_out = "DICOM series left out, with more than 4 slices (the most one case may have): "
    assert f"{left_out}'DSC PERFUSION' (6 files)" in scans[0].notes
    (case,), (note,) = study_case(scans)
    assert case.n_slices == 3 and note.endswith("not analysed: 'ADC'")
    # Alone, a series over the limit is refused as before.
    alone = {name: data for name, data in members.items() if name.startswith("S03/")}
    with pytest.raises(ScanError, match="6 slices; at most 4 are accepted"):
        read_uploads([("perfusion.zip", encode_zip(alone))])


def test_the_guess_for_picking_series_by_hand_fills_in_what_the_names_settle():
    from brainloc.study import describe_series, guess_assignment

    volume = _volume()
    scans = read_uploads([("study.zip", _study(volume))])
    names = [scan.header.description for scan in scans]
    guess = guess_assignment(scans)
    # The axial T1 +C wins over the sagittal one, as when the study is combined by itself.
    assert {name: names[k] for name, k in guess.items()} == {
        "pre-contrast": "AX T1 SE",
        "FLAIR": "AX T2 FLAIR",
        "post-contrast": "AX T1 SE +C",
    }
    assert describe_series(scans[names.index("SAG T1 +C")]) == (
        "'SAG T1 +C' · sagittal · 3 slice(s) of 48×48"
    )
    # Two FLAIR candidates: no guess for FLAIR, the others still guessed.
    twice = read_uploads([("s.zip", _study(volume, extra={"AX FLAIR 2": _grey(volume, 1)}))])
    guess = guess_assignment(twice)
    assert guess["FLAIR"] is None and guess["pre-contrast"] is not None


def test_one_upload_of_series_the_names_do_not_settle_is_refused_not_guessed(tiny_pipeline):
    volume = _volume()
    study = _study(volume, extra={"AX FLAIR repeat": _grey(volume, 1)})
    with pytest.raises(ScanError) as refused:
        analyze_uploads(tiny_pipeline, [("study.zip", study)])
    message = str(refused.value)
    assert message.startswith(
        "this upload holds 6 DICOM series ('AX T1 SE', 'AX T2 FLAIR', 'DWI b1000', 'SAG T1 +C', "
        "'AX T1 SE +C', 'AX FLAIR repeat'); more than one series could be the FLAIR series"
    )
    assert message.endswith("choose them under 'A study: choose its series', or upload one series")
    # One series, or single DICOM slices from several series, are still analysed as before.
    one = encode_study({"AX FLAIR": _grey(volume, 1)})
    assert len(analyze_uploads(tiny_pipeline, list(one.items())).slices) == 3
    keys = {f"S0{k}/IM0000": data for k, data in enumerate(encode_study(
        {"AX FLAIR": _grey(volume, 1)[:1], "AX T2": _grey(volume, 0)[:1]}
    ).values())}  # fmt: skip
    assert len(analyze_uploads(tiny_pipeline, list(keys.items())).slices) == 2


def test_a_study_s_flair_alone_can_be_chosen(tiny_pipeline):
    from brainloc.casework import CHOSEN_PREFIX, analyze_chosen_series
    from brainloc.scans import SINGLE_SEQUENCE_NOTE

    volume = _volume()
    scans = read_uploads([("study.zip", _study(volume))])
    names = [scan.header.description for scan in scans]
    flair = names.index("AX T2 FLAIR")
    outcome = analyze_chosen_series(tiny_pipeline, scans, {"FLAIR": flair}, ["study.zip"])
    assert outcome.sequences_present == ("FLAIR",) and len(outcome.slices) == 3
    assert SINGLE_SEQUENCE_NOTE in outcome.notes
    assert f"{CHOSEN_PREFIX}: FLAIR 'AX T2 FLAIR' alone" in outcome.notes
    with pytest.raises(ScanError, match="choose both the pre-contrast and the post-contrast"):
        analyze_chosen_series(
            tiny_pipeline, scans, {"FLAIR": flair, "pre-contrast": 1}, ["study.zip"]
        )
    colour = [*scans, *read_uploads([("rCBV.png", encode_pil(volume[0], "PNG"))])]
    with pytest.raises(ScanError, match="chosen as FLAIR holds three sequences"):
        analyze_chosen_series(tiny_pipeline, colour, {"FLAIR": len(scans)}, ["study.zip"])
