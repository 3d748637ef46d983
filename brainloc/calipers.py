"""Bidimensional tumor measurement: the longest diameter and the longest diameter
perpendicular to it, as a radiologist draws them with calipers on the slice where the
tumor is largest (the RANO convention for glioma, which for lower-grade glioma measures
the T2/FLAIR abnormality our masks outline).

Measured on one slice's largest region (8-connected; of several equally large ones, the one
with the largest product), edge to edge: every tumor pixel is
taken as the square it covers, in millimetres when the pixel spacing is known (rows and
columns may differ) and in pixels otherwise.

- The **longest diameter** is the greatest distance between two corners of the region's
  pixel squares (found on their convex hull). When several directions share it, the one
  with the longest perpendicular diameter is taken.
- The **perpendicular diameter** is the longest chord perpendicular to it: lines at right
  angles to the longest diameter are sampled across the region, and on each the distance
  from the first to the last point inside the region is taken (a gap in a ragged region is
  spanned, as a caliper spans it). The sampling step is half the finer pixel spacing
  (coarser only for regions over 256 pixels across), so the chord is found to within about
  a pixel; a mask's own edge is no more certain than that.

Plain numpy/scipy; the pages, the PDF and the batch CLI all quote these numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

#: Sampling step across the region, in pixels of the finer spacing.
STEP_PX = 0.5
#: At most this many sampling steps across a region in either direction.
MAX_STEPS = 512

Point = tuple[float, float]


@dataclass(frozen=True)
class Calipers:
    """The two diameters of one slice's largest tumor region.

    Attributes:
        longest: the longest diameter, in ``unit``.
        perpendicular: the longest diameter perpendicular to it, in ``unit``.
        unit: "mm" when the pixel spacing is known, else "px".
        longest_line: its end points as (row, column) in pixel coordinates (pixel centres at
            whole numbers), for drawing.
        perpendicular_line: the same for the perpendicular diameter.
    """

    longest: float
    perpendicular: float
    unit: str
    longest_line: tuple[Point, Point]
    perpendicular_line: tuple[Point, Point]

    @property
    def product(self) -> float:
        """Longest × perpendicular diameter (the RANO bidimensional product), in unit²."""
        return self.longest * self.perpendicular

    @property
    def text(self) -> str:
        """ "34.2 × 21.0 mm" (:func:`diameters_text`)."""
        return diameters_text(self.longest, self.perpendicular, self.unit)

    def to_dict(self) -> dict:
        return {
            "longest": self.longest,
            "perpendicular": self.perpendicular,
            "unit": self.unit,
            "longest_line": [list(p) for p in self.longest_line],
            "perpendicular_line": [list(p) for p in self.perpendicular_line],
        }


def largest_regions(mask: np.ndarray) -> list[np.ndarray]:
    """The largest 8-connected regions of a bool mask: one, or several of equal size."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return [labels > 0]
    sizes = np.bincount(labels.ravel())[1:]
    return [labels == label + 1 for label in np.flatnonzero(sizes == sizes.max())]


def measure(mask: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> Calipers | None:
    """Measure the largest region of a slice's tumor mask; None when the mask is empty.

    Regions of equal size are all measured, and the one with the largest product is kept, so
    that the result does not depend on the slice's orientation.

    Args:
        mask: bool (H, W) tumor mask.
        spacing_mm: (row, column) pixel spacing in mm, when known.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    if not mask.any():
        return None
    if spacing_mm is not None and not all(float(s) > 0 for s in spacing_mm):
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm}")
    # Work on the tumor's bounding box with a margin of one pixel (a tenth of the work on a
    # small tumor); ``origin`` takes the lines back to the slice's pixel coordinates.
    rows, columns = np.nonzero(mask)
    top, left = max(int(rows.min()) - 1, 0), max(int(columns.min()) - 1, 0)
    box = mask[top : int(rows.max()) + 2, left : int(columns.max()) + 2]
    origin = np.array([top, left], dtype=np.float64)
    scale = np.array(spacing_mm if spacing_mm else (1.0, 1.0), dtype=np.float64)
    measured = [_measure_region(region, scale) for region in largest_regions(box)]
    longest, perpendicular, start, end, chord = max(measured, key=lambda m: m[0] * m[1])

    def to_pixels(point: np.ndarray) -> Point:
        row, column = point / scale + origin
        return (round(float(row), 3), round(float(column), 3))

    return Calipers(
        longest=longest,
        perpendicular=perpendicular,
        unit="mm" if spacing_mm else "px",
        longest_line=(to_pixels(start), to_pixels(end)),
        perpendicular_line=(to_pixels(chord[0]), to_pixels(chord[1])),
    )


def _measure_region(region: np.ndarray, scale: np.ndarray):
    """(longest, perpendicular, start, end, chord) of one region, in physical units.

    Several directions can share the longest distance (a rectangle's two diagonals, a cross's
    two bars); a reader then takes the one with the longest perpendicular, which also makes
    the result independent of how the slice is oriented.
    """
    corners = _corners(region, scale)
    hull = corners[ConvexHull(corners).vertices]
    candidates = []
    for start, end in _longest(hull):
        chord = _perpendicular(region, scale, hull, start, end)
        candidates.append((float(np.linalg.norm(chord[1] - chord[0])), start, end, chord))
    perpendicular, start, end, chord = max(candidates, key=lambda item: item[0])
    return float(np.linalg.norm(end - start)), perpendicular, start, end, chord


def _corners(region: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Corners of the pixel squares of the region's edge pixels, in physical units."""
    edge = region & ~ndimage.binary_erosion(region)
    rows, columns = np.nonzero(edge)
    offsets = np.array([(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)])
    centres = np.stack([rows, columns], axis=1).astype(np.float64)
    corners = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
    return corners * scale


def _longest(hull: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every longest line between two hull corners, one per direction (ties within 1e-9)."""
    distances = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    firsts, seconds = np.nonzero(distances >= distances.max() * (1 - 1e-9))
    lines: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
    for first, second in zip(firsts, seconds, strict=True):
        start, end = hull[first], hull[second]
        # A stable orientation, so that the same region always gives the same line.
        if (end[0], end[1]) < (start[0], start[1]):
            start, end = end, start
        direction = (end - start) / np.linalg.norm(end - start)
        lines.setdefault((round(direction[0], 9), round(direction[1], 9)), (start, end))
    return [lines[key] for key in sorted(lines)]


def _perpendicular(
    region: np.ndarray,
    scale: np.ndarray,
    hull: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """End points of the longest chord of the region perpendicular to start→end."""
    along = (end - start) / np.linalg.norm(end - start)
    across = np.array([-along[1], along[0]])
    t_values = hull @ along
    s_values = hull @ across
    spans = (t_values.max() - t_values.min(), s_values.max() - s_values.min())
    step = max(STEP_PX * float(scale.min()), max(spans) / MAX_STEPS)
    # Sample inside the extremes by half a step, so that a sample never sits on an edge, and
    # also through every hull corner: a thin region's longest chord runs corner to corner,
    # between two samples of the grid.
    inner = (t_values > t_values.min()) & (t_values < t_values.max())
    grid = np.arange(t_values.min() + step / 2, t_values.max(), step)
    t = np.unique(np.concatenate([grid, t_values[inner]]))
    s = np.arange(s_values.min() + step / 2, s_values.max(), step)
    points = t[:, None, None] * along + s[None, :, None] * across
    index = np.floor(points / scale + 0.5).astype(np.int64)
    rows, columns = index[..., 0], index[..., 1]
    inside = (rows >= 0) & (rows < region.shape[0]) & (columns >= 0) & (columns < region.shape[1])
    inside[inside] = region[rows[inside], columns[inside]]
    hit = inside.any(axis=1)
    first = np.argmax(inside, axis=1)
    last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    lengths = np.where(hit, (last - first + 1) * step, -1.0)
    line = int(np.argmax(lengths))
    # Half a step beyond the outermost samples inside, but never beyond the region's extent.
    low = max(s[first[line]] - step / 2, s_values.min())
    high = min(s[last[line]] + step / 2, s_values.max())
    return t[line] * along + low * across, t[line] * along + high * across


def largest_cross_section(calipers: Sequence[Calipers | None]) -> dict | None:
    """The slice whose calipers have the largest product (None for a slice without tumor):
    ``{"slice", "longest", "perpendicular", "unit"}``, or None without tumor or when the
    slices' units differ (pixel spacing known for some slices only)."""
    measured = [(k, c) for k, c in enumerate(calipers) if c is not None]
    if not measured or len({c.unit for _, c in measured}) > 1:
        return None
    index, best = max(measured, key=lambda item: item[1].product)
    return {
        "slice": index,
        "longest": best.longest,
        "perpendicular": best.perpendicular,
        "unit": best.unit,
    }


def diameters_text(longest: float, perpendicular: float, unit: str) -> str:
    """ "34.2 × 21.0 mm" (one decimal in mm, whole pixels in px)."""
    digits = 1 if unit == "mm" else 0
    return f"{longest:.{digits}f} × {perpendicular:.{digits}f} {unit}"
