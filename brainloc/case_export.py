"""A stored case as NIfTI files, for review or research in a volume viewer (ITK-SNAP, 3D Slicer).

One ZIP holds the three sequences as analysed (``<ref>_t1.nii.gz``, ``<ref>_flair.nii.gz``,
``<ref>_t1c.nii.gz``; uint8, after the app's conversion) and the predicted mask
(``<ref>_mask.nii.gz``, 1 = tumor), all on one grid, with a short ``README.txt``.

The files are written the way :func:`brainloc.scan_readers.read_nifti` reads NIfTI: RAS+ voxel
axes, the slice's columns running from the patient's right to left and its rows from anterior
to posterior, slices in the case's order. Reading an export back therefore gives the case's
slices exactly, and its three sequences can be analysed again as "one upload per sequence".
The voxel sizes are the analysis' pixel spacing and slice distance; the volume's position in
the scanner was not stored, so the files sit at the origin and do not overlay the original
DICOM series in world coordinates. Without a known spacing the voxel size is written as 0 and
no transform is set, which tells readers (BrainLoc's included) that sizes are unknown.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from brainloc.casework import StoredCase, StoredSlice
from brainloc.scan_stack import GAP_MARK

SEQUENCE_FILES = ("t1", "flair", "t1c")


class ExportError(ValueError):
    """The case cannot be written as one volume; the message says why."""


def _volume(planes: Sequence[np.ndarray]) -> np.ndarray:
    """(slices, rows, columns) planes -> a RAS+ voxel array (x: right->left reversed, ...)."""
    stack = np.stack(planes)  # (k, row, column)
    # read_nifti shows volume[::-1, ::-1, :].transpose(2, 1, 0); this is its inverse.
    return np.ascontiguousarray(stack.transpose(2, 1, 0)[::-1, ::-1, :])


def _image(volume: np.ndarray, slices: Sequence[StoredSlice]) -> nib.Nifti1Image:
    spacing = slices[0].spacing_mm
    thickness = slices[0].slice_thickness_mm
    if spacing is None:
        # Without a transform, readers take NIfTI's default, the ANALYZE convention, whose x
        # axis runs right to left (nibabel's base affine); store x reversed to stay RAS+.
        image = nib.Nifti1Image(np.ascontiguousarray(volume[::-1]), affine=None)
        image.header["pixdim"][1:4] = 0.0  # sizes unknown: no transform, no voxel size
        image.header.set_sform(None, code=0)
        image.header.set_qform(None, code=0)
        return image
    row_mm, column_mm = spacing
    affine = np.diag([column_mm, row_mm, thickness or 1.0, 1.0])
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    image.header.set_sform(affine, code=1)  # scanner-based, without the scanner's offset
    image.header.set_qform(affine, code=1)
    return image


def export_problem(case: StoredCase) -> str | None:
    """Why ``case`` cannot be exported as one volume, or None when it can."""
    shapes = {s.image.shape for s in case.slices}
    if len(shapes) > 1:
        return "its slices differ in size, so they do not form one volume"
    if len({s.spacing_mm for s in case.slices}) > 1:
        return "its slices differ in pixel spacing, so they do not form one volume"
    # Written evenly spaced, a series with slices missing would close the gap (or, with no
    # slice distance, put the slices 1 mm apart), and a viewer would measure a wrong volume.
    if any(note.startswith(GAP_MARK) for note in case.findings.get("scan_notes") or []):
        return "slices are missing from its series (a gap), so they do not form one volume"
    return None


def safe_stem(case: StoredCase) -> str:
    """A file-name stem from the case reference and id, e.g. ``case12_CASE-9``."""
    reference = re.sub(r"[^A-Za-z0-9._-]+", "_", case.case_reference).strip("._")[:60]
    return f"case{case.id}_{reference}" if reference else f"case{case.id}"


def nifti_zip(case: StoredCase) -> bytes:
    """The case's three sequences and its mask as NIfTI files in one ZIP.

    Raises:
        ExportError: the slices do not form one volume (:func:`export_problem`).
    """
    problem = export_problem(case)
    if problem:
        raise ExportError(f"This case cannot be exported as NIfTI: {problem}.")
    stem = safe_stem(case)
    files: dict[str, nib.Nifti1Image] = {}
    for channel, name in enumerate(SEQUENCE_FILES):
        volume = _volume([s.image[..., channel] for s in case.slices]).astype(np.uint8)
        files[f"{stem}_{name}.nii.gz"] = _image(volume, case.slices)
    mask = _volume([s.mask for s in case.slices]).astype(np.uint8)
    files[f"{stem}_mask.nii.gz"] = _image(mask, case.slices)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, image in files.items():
            archive.writestr(name, _gz_bytes(image))
        archive.writestr("README.txt", _readme(case, stem))
    return out.getvalue()


def _gz_bytes(image: nib.Nifti1Image) -> bytes:
    """The image as ``.nii.gz`` bytes."""
    return gzip.compress(image.to_bytes(), mtime=0)


def _readme(case: StoredCase, stem: str) -> str:
    spacing = case.slices[0].spacing_mm
    thickness = case.slices[0].slice_thickness_mm
    if spacing is None:
        sizes = "unknown (the upload gave no pixel spacing): voxel size 0, no transform"
    else:
        slab = f"{thickness:g} mm" if thickness else "not recorded (1 mm written)"
        sizes = f"{spacing[1]:g} x {spacing[0]:g} mm in plane, slice distance {slab}"
    return (
        f"BrainLoc analysis #{case.id}, case reference {case.case_reference}\n"
        f"Models: {case.models_text}\n\n"
        f"{stem}_t1.nii.gz     pre-contrast, as analysed (uint8)\n"
        f"{stem}_flair.nii.gz  FLAIR, as analysed (uint8)\n"
        f"{stem}_t1c.nii.gz    post-contrast, as analysed (uint8)\n"
        f"{stem}_mask.nii.gz   the predicted tumor mask (1 = tumor)\n\n"
        f"Voxel sizes: {sizes}.\n"
        "Axes: RAS+, slices in the case's order. The position in the scanner was not stored, so "
        "the volume sits at the origin: it does not overlay the original DICOM series.\n"
        "Research and decision support only; not a diagnostic device.\n"
    )
