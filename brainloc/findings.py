"""Measurements of a predicted tumor mask, per slice and per case.

Everything here is plain numpy/scipy on arrays, so the pages, the reports and
the CLI all quote the same numbers.

Side of the image: "left" and "right" are the *image's* left and right. In the
radiological convention used by the LGG slices and by DICOM viewers, the
patient's right is shown on the image's left; :data:`SIDE_NOTE` says so in
words for reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from brainloc.calipers import Calipers, largest_cross_section, measure

SIDE_NOTE = (
    "Side refers to the image. In the radiological convention (as in these MR slices), "
    "the patient's right appears on the image's left."
)
#: A tumor with at least this share of its pixels on one side of the midline is on that side.
SIDE_MAJORITY = 0.8


@dataclass(frozen=True)
class SliceFindings:
    """What a slice's tumor mask measures.

    Attributes:
        area_px: tumor pixels.
        area_mm2: tumor area in mm², when the pixel spacing is known.
        brain_area_px: pixels of the brain mask estimated from the image.
        percent_of_brain: tumor area as a percentage of the brain area (None
            when no brain is found).
        bbox: (top, left, bottom, right) in pixels, bottom/right exclusive, or None.
        centroid: (row, column) of the tumor pixels, or None.
        side: "left", "right" or "midline" of the image, or None without tumor.
        patient_side: the patient's side under the radiological convention.
        regions: number of separate tumor regions (8-connected).
        calipers: the longest diameter and the longest one perpendicular to it, of the
            largest region (:mod:`brainloc.calipers`), or None without tumor.
    """

    area_px: int
    area_mm2: float | None
    brain_area_px: int
    percent_of_brain: float | None
    bbox: tuple[int, int, int, int] | None
    centroid: tuple[float, float] | None
    side: str | None
    patient_side: str | None
    regions: int
    calipers: Calipers | None = None

    @property
    def has_tumor(self) -> bool:
        return self.area_px > 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bbox"] = list(self.bbox) if self.bbox else None
        data["centroid"] = list(self.centroid) if self.centroid else None
        data["calipers"] = self.calipers.to_dict() if self.calipers else None
        return data


@dataclass(frozen=True)
class CaseFindings:
    """Summary of a case (a stack of slices).

    Attributes:
        n_slices: slices analysed.
        tumor_slices: indices of slices whose mask is not empty.
        total_area_px: tumor pixels over all slices.
        volume_ml: estimated tumor volume (sum of areas x slice distance), for a volume of
            more than one slice whose pixel spacing and slice distance are known (a series
            with slices missing has no slice distance, so no volume).
        largest_slice: index of the slice with the largest tumor area, or None.
        largest_area_px: that slice's tumor area.
        largest_cross_section: the slice whose tumor has the largest bidimensional product
            (longest × perpendicular diameter, :func:`brainloc.calipers.largest_cross_section`):
            ``{"slice", "longest", "perpendicular", "unit"}``, or None.
    """

    n_slices: int
    tumor_slices: tuple[int, ...]
    total_area_px: int
    volume_ml: float | None
    largest_slice: int | None
    largest_area_px: int
    largest_cross_section: dict | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tumor_slices"] = list(self.tumor_slices)
        return data


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Estimate the brain (head) area of a slice by thresholding.

    Args:
        image: uint8 (H, W, 3) or (H, W).

    Returns:
        bool (H, W): pixels brighter than a tenth of the slice's bright level,
        holes filled, specks removed, largest connected part kept.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        # Pairwise maxima: several times faster than image.max(axis=-1) on interleaved RGB.
        intensity = np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])
    else:
        intensity = image
    if intensity.dtype == np.uint8:
        counts = np.cumsum(np.bincount(intensity.ravel(), minlength=256))
        bright = float(np.searchsorted(counts, 0.99 * counts[-1]))
    else:
        bright = float(np.percentile(intensity, 99))
    if bright <= 0:
        return np.zeros(intensity.shape, dtype=bool)
    mask = (intensity > max(0.1 * bright, 1.0)).view(np.uint8)
    # A 3x3 opening (separable min/max filters are ~5x faster than binary_opening).
    mask = ndimage.maximum_filter(ndimage.minimum_filter(mask, 3, mode="constant"), 3) > 0
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return _fill_holes(labels == (int(np.argmax(sizes)) + 1))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background parts that do not touch the image border (faster than
    ``ndimage.binary_fill_holes``, which dilates iteratively)."""
    background, count = ndimage.label(~mask)
    edges = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[edges] = True
    outside[0] = False
    return ~outside[background]


def _side(mask: np.ndarray, brain: np.ndarray) -> str:
    columns = np.nonzero(brain.any(axis=0))[0]
    midline = (columns[0] + columns[-1] + 1) / 2 if columns.size else mask.shape[1] / 2
    tumor_columns = np.nonzero(mask)[1] + 0.5
    left_share = float(np.mean(tumor_columns < midline))
    if left_share >= SIDE_MAJORITY:
        return "left"
    if left_share <= 1 - SIDE_MAJORITY:
        return "right"
    return "midline"


_PATIENT_SIDE = {"left": "right", "right": "left", "midline": "midline"}


def slice_findings(
    mask: np.ndarray,
    image: np.ndarray | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> SliceFindings:
    """Measure one slice's tumor mask.

    Args:
        mask: bool (H, W) tumor mask.
        image: the slice, uint8 (H, W, 3), for the brain area; None skips it.
        spacing_mm: (row, column) pixel spacing in mm, when known.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    if image is not None and np.asarray(image).shape[:2] != mask.shape:
        raise ValueError(f"image {np.asarray(image).shape} and mask {mask.shape} differ in size")
    brain = brain_mask(image) | mask if image is not None else np.zeros_like(mask)
    brain_area = int(brain.sum())
    area = int(mask.sum())
    pixel_mm2 = float(spacing_mm[0]) * float(spacing_mm[1]) if spacing_mm else None
    percent = 100.0 * area / brain_area if brain_area else None
    if area == 0:
        return SliceFindings(
            area_px=0,
            area_mm2=0.0 if pixel_mm2 else None,
            brain_area_px=brain_area,
            percent_of_brain=percent,
            bbox=None,
            centroid=None,
            side=None,
            patient_side=None,
            regions=0,
        )
    rows, cols = np.nonzero(mask)
    _, regions = ndimage.label(mask, structure=np.ones((3, 3), bool))
    side = _side(mask, brain if brain_area > area else np.ones_like(mask))
    return SliceFindings(
        area_px=area,
        area_mm2=area * pixel_mm2 if pixel_mm2 else None,
        brain_area_px=brain_area,
        percent_of_brain=percent,
        bbox=(int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1),
        centroid=(float(rows.mean()), float(cols.mean())),
        side=side,
        patient_side=_PATIENT_SIDE[side],
        regions=int(regions),
        calipers=measure(mask, spacing_mm),
    )


def case_findings(
    areas_px: Sequence[int],
    spacing_mm: tuple[float, float] | None = None,
    slice_thickness_mm: float | None = None,
    calipers: Sequence[Calipers | None] | None = None,
) -> CaseFindings:
    """Summarise a case from its per-slice tumor areas (in slice order).

    Args:
        areas_px: tumor pixels of each slice.
        calipers: each slice's :class:`~brainloc.calipers.Calipers` (None without tumor), in
            the same order, for the largest cross-section; None leaves it out.
        spacing_mm: (row, column) pixel spacing in mm, when known.
        slice_thickness_mm: distance between slice centres in mm, when known.
    """
    areas = np.asarray(list(areas_px), dtype=np.int64)
    tumor = tuple(int(k) for k in np.nonzero(areas > 0)[0])
    volume = None
    # One slice is no volume: its area times the slice thickness says nothing of the tumor's.
    if spacing_mm and slice_thickness_mm and areas.size > 1:
        cubic_mm = float(areas.sum()) * spacing_mm[0] * spacing_mm[1] * slice_thickness_mm
        volume = cubic_mm / 1000.0
    largest = int(np.argmax(areas)) if tumor else None
    return CaseFindings(
        n_slices=int(areas.size),
        tumor_slices=tumor,
        total_area_px=int(areas.sum()),
        volume_ml=volume,
        largest_slice=largest,
        largest_area_px=int(areas[largest]) if largest is not None else 0,
        largest_cross_section=largest_cross_section(calipers) if calipers else None,
    )
