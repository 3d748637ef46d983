"""The rules that make DICOM images one stack of slices, and the order of that stack.

A DICOM series (the classic files of one SeriesInstanceUID) or an enhanced multi-frame
file (its frames, as :mod:`brainloc.scan_enhanced` flattens them) is analysed as one volume
only when its images are one stack; :mod:`brainloc.scan_dicom` reads the pixels, this module
decides what is one stack and in which order. Each image is a ``(name, header)`` pair, the
header a pydicom dataset.

- **Geometry.** The slice normal is the cross product of ImageOrientationPatient's row and
  column directions; a slice's position is ImagePositionPatient projected on that normal (mm).
  The plane is the patient axis closest to the normal (sagittal, coronal or axial).
- **One stack.** All slice normals are parallel (within about 2.5 degrees; a three-plane
  localizer is not), and no two images lie at the same position along the normal (within
  0.01 mm; several echoes, b-values or time points per position are not). Otherwise
  :func:`check_one_stack` raises :class:`NotOneStack`. Images without orientation or
  position cannot be checked and pass.
- **Repeated files.** Files with a SOPInstanceUID already seen (a study exported twice) are
  the same image: :func:`without_copies` keeps the first and counts the others.
- **Order.** By position along the normal when every image records one, and then the slice
  distance is the median step between neighbouring positions; else by InstanceNumber when
  every image has one, else by file name, both without a slice distance (the reader falls
  back to the header's SpacingBetweenSlices or SliceThickness).
- **Gaps.** A step between neighbouring positions more than 1.5 times the smallest step means
  slices are missing there (not exported, or not acquired): :func:`gap_note` names each gap
  by the slices on either side. Such a stack has no one slice distance, and what lay in the
  gap was never seen, so the reader gives it none and no tumor volume is estimated for it
  (summing areas times a slice distance would leave the gap out, or, weighting each slice by
  its neighbours' distance, fill it with a guess).
"""

from __future__ import annotations

import logging

import numpy as np

from brainloc.scans import ScanError

logger = logging.getLogger(__name__)

#: Slice normals closer than this (1 - cosine, about 2.5 degrees) count as one orientation.
_PARALLEL = 1e-3
#: Slice positions along the normal closer than this (mm) are the same slice position.
_SAME_POSITION_MM = 0.01
_PLANES = ("sagittal", "coronal", "axial")
#: A step between neighbouring slices more than this many times the smallest step is a gap.
#: (Not the median: in a short or half-gapped series, e.g. 0, 5, 20 or 0, 5, 10, 25, 40 mm, the
#: median step is itself a gap and hides the others.)
GAP_FACTOR = 1.5
#: How the note on a stack with a gap begins (the PDF report picks the note out by it).
GAP_MARK = "slices missing"


def orientation(ds) -> np.ndarray | None:
    """ImageOrientationPatient as 6 finite floats, or None."""
    try:
        values = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    except (AttributeError, TypeError, ValueError):
        return None
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        return None
    return values


def normal(ds) -> np.ndarray | None:
    """The slice normal (row × column direction of ImageOrientationPatient), or None."""
    values = orientation(ds)
    return None if values is None else np.cross(values[:3], values[3:])


def plane(ds) -> str | None:
    """ "sagittal", "coronal" or "axial": the patient axis closest to the slice normal, or
    None when the orientation is not recorded."""
    direction = normal(ds)
    if direction is None or not np.any(direction):
        return None
    return _PLANES[int(np.argmax(np.abs(direction)))]


def patient_position(ds) -> tuple[float, float, float] | None:
    """ImagePositionPatient (mm), or None when missing or malformed."""
    try:
        position = tuple(float(v) for v in ds.ImagePositionPatient)
    except (AttributeError, TypeError, ValueError):
        return None
    return position if len(position) == 3 and all(np.isfinite(position)) else None


def position_along_normal(ds) -> float | None:
    """The slice's position along its normal (mm), for ordering a series."""
    position = patient_position(ds)
    direction = normal(ds)
    if direction is None or position is None:
        return None
    return float(np.asarray(position) @ direction)


def _instance(ds) -> int | None:
    try:
        return int(ds.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


class NotOneStack(ScanError):
    """A series (or enhanced file) whose images are not one stack of slices.

    Attributes:
        reason: why, in words, without the file's name.
    """

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label}: {reason}; upload one stack of slices")
        self.reason = reason


def without_copies(items: list[tuple[str, object]]) -> tuple[list[tuple[str, object]], int]:
    """The (name, dataset) pairs with repeated files of one image (the same SOPInstanceUID,
    e.g. a study exported twice) left out, and how many were left out."""
    seen: set[str] = set()
    kept = []
    for name, ds in items:
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            continue
        seen.add(uid)
        kept.append((name, ds))
    return kept, len(items) - len(kept)


def check_one_stack(items: list[tuple[str, object]], label: str) -> None:
    """Refuse images of one series that are not one stack: slices in several orientations
    (a three-plane localizer) or several images at one position (echoes, b-values, time
    points). Ordering by position and the slice distance mean nothing for them."""
    normals = [normal(ds) for _, ds in items]
    if all(direction is not None for direction in normals):
        units = [direction / (np.linalg.norm(direction) or 1.0) for direction in normals]
        if any(1.0 - abs(float(unit @ units[0])) > _PARALLEL for unit in units):
            planes = sorted({plane(ds) or "oblique" for _, ds in items})
            raise NotOneStack(
                label,
                f"its slices lie in different orientations ({', '.join(planes)}), as in a "
                "localizer",
            )
    positions = sorted(p for p in (position_along_normal(ds) for _, ds in items) if p is not None)
    if len(positions) == len(items) and np.any(np.diff(positions) < _SAME_POSITION_MM):
        close = np.diff(positions) < _SAME_POSITION_MM
        shared = int(np.count_nonzero(np.concatenate([[False], close]) | np.append(close, False)))
        raise NotOneStack(
            label,
            f"{shared} of its {len(items)} images share slice positions (several echoes, "
            "b-values or time points in one series)",
        )


def order(items: list[tuple[str, object]]) -> tuple[list[tuple[str, object]], float | None]:
    """Sort (name, dataset) pairs; return them and the slice distance from positions."""
    positions = [position_along_normal(ds) for _, ds in items]
    if all(p is not None for p in positions):
        ranked = sorted(range(len(items)), key=lambda k: positions[k])
        steps = np.diff(sorted(positions))
        distance = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else None
        return [items[k] for k in ranked], distance
    instances = [_instance(ds) for _, ds in items]
    if all(n is not None for n in instances):
        return [items[k] for k in sorted(range(len(items)), key=lambda k: instances[k])], None
    logger.info("DICOM series without positions or instance numbers; ordered by file name")
    return sorted(items, key=lambda item: item[0]), None


def gaps_after(items: list[tuple[str, object]], distance: float | None) -> tuple[int, ...]:
    """The indices k of an ordered stack's slices that have slices missing between them and
    slice k + 1: a step more than :data:`GAP_FACTOR` times the smallest step.

    Args:
        items: (name, dataset) pairs in slice order (:func:`order`).
        distance: the stack's median slice distance in mm (:func:`order`), None when the
            positions gave none (then nothing can be said about gaps, and none is returned).
    """
    positions = [position_along_normal(ds) for _, ds in items]
    if distance is None or None in positions or len(positions) < 2:
        return ()
    steps = np.diff(positions)
    return tuple(int(k) for k in np.nonzero(steps > GAP_FACTOR * float(np.min(steps)))[0])


def gap_note(items: list[tuple[str, object]], gaps: tuple[int, ...]) -> str | None:
    """The note naming where slices are missing in an ordered stack, or None without a gap.

    Args:
        items: (name, dataset) pairs in slice order (:func:`order`).
        gaps: the stack's gaps, as :func:`gaps_after` finds them.
    """
    if not gaps:
        return None
    positions = [position_along_normal(ds) for _, ds in items]
    step = float(np.min(np.diff(positions)))
    named = [
        f"{positions[k + 1] - positions[k]:.1f} mm between {items[k][0]} (slice position "
        f"{positions[k]:.1f} mm) and {items[k + 1][0]} ({positions[k + 1]:.1f} mm)"
        for k in gaps
    ]
    return (
        f"{GAP_MARK}: the series has {'a gap' if len(gaps) == 1 else f'{len(gaps)} gaps'} of "
        f"{'; '.join(named)}, where its closest slices lie {step:.1f} mm apart; what lies in "
        "a gap was not imaged, so tumor there is not seen and no tumor volume is estimated"
    )
