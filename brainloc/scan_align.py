"""Putting a case's three series on the FLAIR series' grid by the geometry in their headers.

The models read pre-contrast, FLAIR and post-contrast of the same slice. A clinic's series of
one examination often differ in slice positions, slice distance, matrix or plane (a 5 mm
axial FLAIR beside a 1 mm sagittal 3D T1 after contrast). Their DICOM headers place every
pixel in the scanner's patient coordinates (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing), as a PACS viewer uses for its reference lines; a NIfTI file's affine does the
same (the reader converts it to DICOM's axes). :func:`combine_series` uses them: series
already on one grid are combined as they are (:func:`brainloc.scans.combine_sequences`);
otherwise the pre-contrast and post-contrast series are sampled (trilinear interpolation) at
every pixel of every FLAIR slice, and FLAIR slices outside either series' slab are left out.
This is not image registration: if the patient moved between the series, the channels stay
misaligned, which the combined case's caveat says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from brainloc.scans import (
    FLAIR_ONLY,
    POSITION_TOLERANCE_MM,
    SPACING_TOLERANCE,
    Scan,
    ScanError,
    SeriesHeader,
    combine_sequences,
)

logger = logging.getLogger(__name__)

#: The series sampled onto the FLAIR series' grid.
_MOVED = ("pre-contrast", "post-contrast")
#: Distances between neighbouring slices may differ by this share and still count as even.
_EVEN_SPACING = 0.05
#: What the note on a resampled case always says.
RESAMPLED_MARK = "resampled onto the FLAIR slices by the slice positions and orientations"


@dataclass(frozen=True)
class _Geometry:
    """Where a series' pixels lie, in patient coordinates (mm)."""

    origins: np.ndarray  # (N, 3): each slice's first pixel
    across: np.ndarray  # unit direction in which a row's column index grows
    down: np.ndarray  # unit direction in which a column's row index grows
    normal: np.ndarray
    spacing: tuple[float, float]  # (between rows, between columns)


def _geometry(scan: Scan) -> _Geometry | None:
    header = scan.header
    if header is None or header.orientation is None:
        return None
    if scan.positions_mm is None or scan.spacing_mm is None:
        return None
    orientation = np.asarray(header.orientation, dtype=float)
    across, down = orientation[:3], orientation[3:]
    if min(np.linalg.norm(across), np.linalg.norm(down)) < 0.5:
        return None
    across, down = across / np.linalg.norm(across), down / np.linalg.norm(down)
    normal = np.cross(across, down)
    if np.linalg.norm(normal) < 0.5:
        return None
    return _Geometry(
        origins=np.asarray(scan.positions_mm, dtype=float),
        across=across,
        down=down,
        normal=normal / np.linalg.norm(normal),
        spacing=scan.spacing_mm,
    )


def grid_scan(
    grey: np.ndarray,
    *,
    orientation: tuple[float, float, float, float, float, float],
    first_position: tuple[float, float, float],
    spacing: tuple[float, float],
    step: float,
) -> Scan:
    """A single-sequence series placed as a DICOM header would place it: ``grey``'s (N, H, W)
    uint8 slices ``step`` mm apart along the slice normal, the first slice's first pixel at
    ``first_position``, rows and columns as ``orientation`` (ImageOrientationPatient) and
    ``spacing`` (between rows, between columns) say. For building series in code (the
    robustness report, benchmarks, tests)."""
    normal = np.cross(orientation[:3], orientation[3:])
    positions = tuple(
        tuple(float(v) for v in np.asarray(first_position, dtype=float) + k * step * normal)
        for k in range(len(grey))
    )
    return Scan(
        slices=np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=-1),
        source_format="dicom",
        names=tuple(f"slice {k + 1}" for k in range(len(grey))),
        sequences_present=FLAIR_ONLY,
        spacing_mm=spacing,
        slice_thickness_mm=step,
        positions_mm=positions,
        header=SeriesHeader(orientation=orientation),
    )


def _gaps_kept(gaps_after: tuple[int, ...], kept: np.ndarray) -> tuple[int, ...]:
    """A stack's gaps (:attr:`Scan.gaps_after`) once only its slices ``kept`` (ascending
    indices) remain: a gap lies after kept slice j when one lay between it and the next kept
    slice, or slices between them were left out."""
    return tuple(
        j
        for j, (here, after) in enumerate(zip(kept, kept[1:], strict=False))
        if after - here > 1 or any(here <= gap < after for gap in gaps_after)
    )


def can_resample(scan: Scan) -> bool:
    """Whether the header gives every slice's position, the orientation and the spacing."""
    return _geometry(scan) is not None


def resample_onto(scan: Scan, reference: Scan, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``scan`` (one sequence) sampled at every pixel of ``reference``'s slices.

    Returns:
        (N, H, W) uint8 on the reference's grid, and an (N,) bool: which reference slices lie
        within ``scan``'s slab (their centre at most half a slice beyond its first or last
        slice). Pixels outside ``scan``'s field of view or more than half a slice beyond its
        slab are 0.

    Raises:
        ScanError: the geometry is missing, or ``scan``'s slices are not evenly spaced
            (``name`` is the sequence, for the message).
    """
    from scipy.ndimage import map_coordinates

    moving, target = _geometry(scan), _geometry(reference)
    if moving is None or target is None:
        raise ScanError(
            f"the {name} series cannot be placed on the FLAIR slices: the file headers do not "
            "give every slice's position and orientation"
        )
    depths = (moving.origins - moving.origins[0]) @ moving.normal
    if scan.n_slices > 1:
        steps = np.diff(depths)
        step = float(np.median(steps))
        if step <= 0 or np.any(np.abs(steps - step) > _EVEN_SPACING * step):
            raise ScanError(
                f"the {name} series' slices are not evenly spaced, so it cannot be resampled "
                "onto the FLAIR slices"
            )
    else:
        step = float(scan.slice_thickness_mm or 1.0)
    height, width = reference.shape
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    # Each coordinate in the moving series (slice, row, column) is affine in the reference
    # pixel's row and column: start + row * per_row + column * per_column.
    axes = np.stack([moving.normal / step, moving.down / moving.spacing[0],
                     moving.across / moving.spacing[1]])  # fmt: skip
    per_row = axes @ (target.down * target.spacing[0])
    per_column = axes @ (target.across * target.spacing[1])
    volume = scan.slices[..., 0].astype(np.float32)
    last = scan.n_slices - 1
    out = np.zeros((reference.n_slices, height, width), dtype=np.uint8)
    inside = np.zeros(reference.n_slices, dtype=bool)
    for k, origin in enumerate(target.origins):
        start = axes @ (origin - moving.origins[0])
        # Rounded to a millionth of a pixel: an edge pixel computed as -1e-15 stays inside the
        # field of view; beyond it, everything is 0.
        depth, row, column = (
            np.round(start[a] + rows * per_row[a] + cols * per_column[a], 6) for a in range(3)
        )
        inside[k] = -0.5 <= depth[height // 2, width // 2] <= last + 0.5
        # Within half a slice of the slab, the nearest slice's values; beyond it, nothing.
        coordinates = np.stack([np.clip(depth, 0, last), row, column])
        sampled = map_coordinates(volume, coordinates, order=1, mode="constant", cval=0.0)
        sampled[(depth < -0.5) | (depth > last + 0.5)] = 0.0
        out[k] = np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
    return out, inside


def _same_grid(scan: Scan, reference: Scan) -> bool:
    """Whether both place the same slices on the same pixels (by their headers), within the
    tolerances :func:`brainloc.scans.combine_sequences` allows."""
    if scan.n_slices != reference.n_slices or scan.shape != reference.shape:
        return False
    mine, theirs = _geometry(scan), _geometry(reference)
    if mine is None or theirs is None:
        return False
    return (
        np.allclose(mine.spacing, theirs.spacing, rtol=SPACING_TOLERANCE, atol=0.0)
        and np.allclose(mine.across, theirs.across, atol=1e-3)
        and np.allclose(mine.down, theirs.down, atol=1e-3)
        and float(np.max(np.abs(mine.origins - theirs.origins))) <= POSITION_TOLERANCE_MM
    )


def combine_series(series: dict[str, Scan]) -> Scan:
    """One three-channel case from a case's three single-sequence series.

    Series on one grid are combined as :func:`brainloc.scans.combine_sequences` does. Series
    that are not, but whose headers place every slice (DICOM, NIfTI), are resampled onto the FLAIR
    slices first (see the module docstring); the case's notes then say so and how many FLAIR
    slices lay outside the other series.

    Raises:
        ScanError: the series cannot be combined or resampled (message fit for the user).
    """
    try:
        return combine_sequences(series)
    except ScanError as mismatch:
        # Resampling mends a grid, not a missing series or a file holding all three.
        usable = all(
            name in series and series[name].single_sequence and can_resample(series[name])
            for name in ("FLAIR", *_MOVED)
        )
        if not usable:
            raise
        # %r: the message names uploaded files, whose names may hold line breaks.
        logger.info("series on different grids, resampled onto FLAIR: %r", str(mismatch))
    flair = series["FLAIR"]
    moved = [name for name in _MOVED if not _same_grid(series[name], flair)]
    sampled = {name: resample_onto(series[name], flair, name) for name in moved}
    keep = np.ones(flair.n_slices, dtype=bool)
    for _, inside in sampled.values():
        keep &= inside
    if not keep.any():
        raise ScanError(
            "the pre-contrast and post-contrast series do not cover any FLAIR slice (by the "
            "slice positions in the file headers)"
        )
    kept = replace(
        flair,
        slices=flair.slices[keep],
        names=tuple(n for n, k in zip(flair.names, keep, strict=True) if k),
        positions_mm=tuple(p for p, k in zip(flair.positions_mm, keep, strict=True) if k),
        gaps_after=_gaps_kept(flair.gaps_after, np.flatnonzero(keep)),
    )
    aligned = {"FLAIR": kept}
    for name in _MOVED:
        values = sampled[name][0] if name in sampled else series[name].slices[..., 0]
        aligned[name] = replace(
            kept,
            slices=np.repeat(values[keep][..., None], 3, axis=-1),
            sequences_present=FLAIR_ONLY,
            notes=series[name].notes,
            header=None,
        )
    combined = combine_sequences(aligned)
    which = " and ".join(moved)
    note = (
        f"{which} lay on other slices or pixel grids than FLAIR and "
        f"{'were' if len(moved) > 1 else 'was'} {RESAMPLED_MARK} in the file headers "
        "(trilinear interpolation; movement of the patient between the series is not "
        "corrected)"
    )
    left_out = int((~keep).sum())
    if left_out:
        note += (
            f"; {left_out} of {flair.n_slices} FLAIR slice(s) lay outside the other series "
            "and were left out"
        )
    return replace(combined, notes=(*combined.notes, note))
