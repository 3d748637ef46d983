"""A stored case as NIfTI: read back by BrainLoc's own NIfTI reader, slice for slice."""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import replace
from datetime import UTC, datetime

import nibabel as nib
import numpy as np
import pytest

from brainloc.case_export import ExportError, export_problem, nifti_zip, safe_stem
from brainloc.casework import StoredCase, StoredSlice, analyze_sequences
from brainloc.scan_readers import read_nifti
from brainloc.scans import ALL_SEQUENCES


def _case(spacing=(0.9, 0.8), thickness=5.0, reference="CASE 9/../x", sizes=None) -> StoredCase:
    rng = np.random.default_rng(3)
    slices = []
    for k, (height, width) in enumerate(sizes or [(40, 56)] * 4):
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), bool)
        mask[5 + k : 15 + k, 10 : 20 + 2 * k] = True  # a different shape on every slice
        slices.append(StoredSlice(k, f"s{k}.dcm", image, mask, 0.9, True, {}, spacing, thickness))
    return StoredCase(
        id=12, case_reference=reference, created_at=datetime(2026, 11, 27, tzinfo=UTC),
        source_name="s0.dcm", source_format="dicom", tumor_probability=0.9, has_tumor=True,
        threshold=0.5, classifier=("brainloc-classifier", "2.2.0"),
        segmenter=("brainloc-segmenter", "2.3.0"), findings={}, slices=tuple(slices),
    )  # fmt: skip


def _files(case: StoredCase) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(nifti_zip(case))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_sequences_read_back_as_the_case_and_the_mask_lies_on_them():
    case = _case()
    files = _files(case)
    stem = "case12_CASE_9_.._x"
    assert sorted(files) == sorted(
        ["README.txt"] + [f"{stem}_{name}.nii.gz" for name in ("t1", "flair", "t1c", "mask")]
    )
    for channel, name in enumerate(("t1", "flair", "t1c")):
        scan = read_nifti(gzip.decompress(files[f"{stem}_{name}.nii.gz"]), name)
        expected = np.stack([s.image[..., channel] for s in case.slices])
        assert np.array_equal(scan.slices[..., 0], expected)
        assert scan.spacing_mm == pytest.approx((0.9, 0.8))
        assert scan.slice_thickness_mm == pytest.approx(5.0)
    # The mask is written with the same orientation: read the way read_nifti reads, it is the
    # case's masks, voxel for voxel.
    mask = nib.as_closest_canonical(
        nib.Nifti1Image.from_bytes(gzip.decompress(files[f"{stem}_mask.nii.gz"]))
    )
    shown = np.asanyarray(mask.dataobj)[::-1, ::-1, :].transpose(2, 1, 0)
    assert np.array_equal(shown.astype(bool), np.stack([s.mask for s in case.slices]))
    assert "0.8 x 0.9 mm in plane, slice distance 5 mm" in files["README.txt"].decode()


def test_unknown_spacing_is_written_as_unknown_not_as_one_millimetre():
    case = _case(spacing=None, thickness=None)
    files = _files(case)
    name = next(n for n in files if n.endswith("_flair.nii.gz"))
    scan = read_nifti(gzip.decompress(files[name]), "flair")
    assert np.array_equal(scan.slices[..., 0], np.stack([s.image[..., 1] for s in case.slices]))
    assert scan.spacing_mm is None and scan.slice_thickness_mm is None
    assert any("sizes are in pixels" in note for note in scan.notes)
    assert "unknown" in files["README.txt"].decode()


def test_slices_that_do_not_form_one_volume_are_refused_with_the_reason():
    mixed = _case(sizes=[(40, 56), (40, 56), (32, 32)])
    assert "differ in size" in export_problem(mixed)
    with pytest.raises(ExportError, match="differ in size"):
        nifti_zip(mixed)
    case = _case()
    respaced = replace(
        case, slices=(case.slices[0], replace(case.slices[1], spacing_mm=(1.0, 1.0)))
    )
    assert "pixel spacing" in export_problem(respaced)
    assert export_problem(case) is None
    gap = "slices missing: the series has a gap of 15.0 mm between s1.dcm (…) and s2.dcm (…)"
    gapped = replace(case, findings={"scan_notes": [gap]})
    assert "slices are missing from its series" in export_problem(gapped)


def test_file_names_keep_only_safe_characters():
    assert safe_stem(_case(reference="../../etc/passwd")) == "case12_etc_passwd"
    assert safe_stem(_case(reference="Ünïcode ref #7")) == "case12_n_code_ref_7"
    assert safe_stem(_case(reference="///")) == "case12"


@pytest.mark.parametrize("spacing", [(0.9, 0.8), None])
def test_an_export_can_be_analysed_again_as_one_upload_per_sequence(tiny_pipeline, spacing):
    case = _case(spacing=spacing, thickness=5.0 if spacing else None)
    files = _files(case)
    uploads = {
        channel: [(name, files[name])]
        for channel, suffix in zip(ALL_SEQUENCES, ("_t1.", "_flair.", "_t1c."), strict=True)
        for name in files
        if suffix in name
    }
    outcome = analyze_sequences(tiny_pipeline, uploads)
    assert len(outcome.slices) == len(case.slices)
    for analysed, stored in zip(outcome.slices, case.slices, strict=True):
        assert np.array_equal(analysed.image, stored.image)
