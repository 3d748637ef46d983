"""The bidimensional measurement on shapes whose diameters are known: squares (exact
diagonals), discs and rotated ellipses, in pixels and on anisotropic pixel spacing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainloc.calipers import largest_cross_section, largest_regions, measure
from brainloc.findings import case_findings, slice_findings
from brainloc.findings_text import DIAMETERS_LABEL, case_rows, findings_rows
from brainloc.overlay import CALIPER_YELLOW, draw_calipers


def _ellipse(a: float, b: float, angle: float, spacing=(1.0, 1.0), shape=(256, 256)):
    """Pixels whose centres lie in an ellipse (semi-axes a, b in the spacing's unit) centred
    on the slice, its a-axis at ``angle`` radians from the columns' direction."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    y = (rows - shape[0] / 2) * spacing[0]
    x = (columns - shape[1] / 2) * spacing[1]
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def _direction(line) -> float:
    """Angle of a (row, column) line against the columns' direction, modulo pi."""
    (r0, c0), (r1, c1) = line
    return math.atan2(r1 - r0, c1 - c0) % math.pi


def _length(line, spacing=(1.0, 1.0)) -> float:
    (r0, c0), (r1, c1) = line
    return math.hypot((r1 - r0) * spacing[0], (c1 - c0) * spacing[1])


def test_a_square_measures_its_diagonals_edge_to_edge():
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:40] = True  # 20 x 20 pixel squares
    calipers = measure(mask)
    assert calipers.unit == "px"
    assert calipers.longest == pytest.approx(20 * math.sqrt(2))
    # Perpendicular to one diagonal is the other, found by sampling at half a pixel.
    assert 20 * math.sqrt(2) - 1.0 <= calipers.perpendicular <= 20 * math.sqrt(2) + 1e-9
    # The longest line joins two opposite outer corners.
    ends = sorted(calipers.longest_line)
    assert ends in ([(9.5, 19.5), (29.5, 39.5)], [(9.5, 39.5), (29.5, 19.5)])


@pytest.mark.parametrize("radius", [3, 10, 40])
def test_a_disc_measures_its_diameter_both_ways(radius):
    calipers = measure(_ellipse(radius, radius, 0.0))
    # Pixel centres reach the radius, their squares' corners up to 0.7 px further, and the
    # sampled chord may add half a step.
    for diameter in (calipers.longest, calipers.perpendicular):
        assert 2 * radius - 0.5 <= diameter <= 2 * radius + 2.0


@pytest.mark.parametrize("angle", [0.0, 0.3, 0.8, math.pi / 2, 2.5])
def test_a_rotated_ellipse_gives_its_axes_and_their_directions(angle):
    calipers = measure(_ellipse(30, 12, angle))
    assert 60 - 0.5 <= calipers.longest <= 61.5
    assert 24 - 1.0 <= calipers.perpendicular <= 25.5
    assert calipers.product == pytest.approx(calipers.longest * calipers.perpendicular)
    # The longest line lies along the major axis; the other is at right angles to it.
    off = abs(_direction(calipers.longest_line) - angle % math.pi)
    assert min(off, math.pi - off) < math.radians(4)
    along = np.subtract(*calipers.longest_line)
    across = np.subtract(*calipers.perpendicular_line)
    # (The end points are rounded to 1/1000 of a pixel.)
    assert abs(along @ across) / (np.linalg.norm(along) * np.linalg.norm(across)) < 1e-4
    # The lines' drawn lengths are the measured ones.
    assert _length(calipers.longest_line) == pytest.approx(calipers.longest, abs=1e-2)
    assert _length(calipers.perpendicular_line) == pytest.approx(calipers.perpendicular, abs=1e-2)


def test_anisotropic_spacing_is_measured_in_millimetres():
    spacing = (0.5, 1.0)
    mask = _ellipse(30, 12, 0.6, spacing=spacing)  # 60 x 24 mm on 0.5 x 1.0 mm pixels
    calipers = measure(mask, spacing)
    assert calipers.unit == "mm"
    assert 60 - 0.5 <= calipers.longest <= 61.5
    assert 24 - 1.0 <= calipers.perpendicular <= 25.5
    # In pixels, the same mask is a different shape with other diameters.
    in_pixels = measure(mask)
    assert in_pixels.unit == "px"
    assert in_pixels.longest > calipers.longest + 10
    # The lines are in pixel coordinates and give the millimetres with the spacing.
    assert _length(calipers.longest_line, spacing) == pytest.approx(calipers.longest, abs=1e-2)


def test_only_the_largest_region_is_measured():
    big = _ellipse(20, 8, 0.2)
    small = np.zeros_like(big)
    small[10:14, 10:14] = True
    both = measure(big | small)
    alone = measure(big)
    assert both.longest == pytest.approx(alone.longest)
    assert both.perpendicular == pytest.approx(alone.perpendicular)
    assert both.longest_line == alone.longest_line
    findings = slice_findings(big | small, spacing_mm=(0.9, 0.9))
    rows = dict(findings_rows(findings.to_dict()))
    assert rows[DIAMETERS_LABEL].endswith(" mm (the largest region)")


def test_ties_are_settled_the_same_way_whatever_the_slice_orientation():
    # A cross of two 1-pixel bars: several corner pairs are 11.05 px apart in two directions,
    # and only one direction has the other bar as its perpendicular.
    cross = np.zeros((32, 32), bool)
    cross[10:21, 15] = True
    cross[15, 10:21] = True
    # Two regions of the same pixel count, a square and a thin bar: the square has the larger
    # product (5.7 × 5.7 against 16.0 × 1.0).
    pair = np.zeros((32, 32), bool)
    pair[2:6, 2:6] = True
    pair[20, 8:24] = True
    diagonal = 4 * math.sqrt(2)
    for mask, perpendicular in ((cross, 11.0), (pair, diagonal)):
        for view in (mask, mask.T, mask[::-1], mask[:, ::-1]):
            calipers = measure(view)
            assert calipers.longest == pytest.approx(measure(mask).longest)
            assert calipers.perpendicular == pytest.approx(perpendicular, abs=0.5)
    assert measure(pair).longest == pytest.approx(diagonal)
    assert len(largest_regions(pair)) == 2


def test_empty_masks_and_bad_spacing():
    assert measure(np.zeros((16, 16), bool)) is None
    assert slice_findings(np.zeros((16, 16), bool)).calipers is None
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    with pytest.raises(ValueError, match="spacing must be positive"):
        measure(mask, (0.0, 1.0))
    with pytest.raises(ValueError, match="expected an"):
        measure(np.zeros((4, 4, 3), bool))


def test_a_single_pixel_and_a_tumor_at_the_slice_edge():
    mask = np.zeros((32, 32), bool)
    mask[0, 0] = True
    calipers = measure(mask, (2.0, 2.0))
    assert calipers.longest == pytest.approx(2 * math.sqrt(2))
    mask[:, :5] = True  # a band along the left edge, 32 x 5 pixels
    calipers = measure(mask)
    assert calipers.longest == pytest.approx(math.hypot(32, 5))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spacing=st.tuples(st.floats(0.3, 2.0), st.floats(0.3, 2.0)),
)
def test_random_blobs_keep_the_measurement_s_geometry(seed, spacing):
    rng = np.random.default_rng(seed)
    mask = np.zeros((48, 48), bool)
    for _ in range(int(rng.integers(1, 5))):
        top, left = rng.integers(8, 30, size=2)
        height, width = rng.integers(1, 12, size=2)
        mask[top : top + height, left : left + width] = True
    calipers = measure(mask, spacing)
    boxes = []
    for region in largest_regions(mask):
        region_rows, region_columns = np.nonzero(region)
        height = (region_rows.max() - region_rows.min() + 1) * spacing[0]
        width = (region_columns.max() - region_columns.min() + 1) * spacing[1]
        boxes.append((height, width))
    # The longest diameter spans the region's box in both directions and fits its diagonal.
    assert any(
        max(height, width) - 1e-9 <= calipers.longest <= math.hypot(height, width) + 1e-9
        for height, width in boxes
    )
    # The perpendicular one is never longer (up to the sampling step).
    assert calipers.perpendicular <= calipers.longest + 0.5 * min(spacing) + 1e-9
    assert calipers.perpendicular > 0
    # Transposing the slice (and its spacing) measures the same tumor.
    transposed = measure(mask.T, spacing[::-1])
    assert transposed.longest == pytest.approx(calipers.longest)
    assert transposed.perpendicular == pytest.approx(calipers.perpendicular, abs=min(spacing))
    json.dumps(calipers.to_dict())


def test_the_case_names_the_slice_of_the_largest_product():
    wide = measure(_ellipse(30, 5, 0.0))  # product about 61 x 11
    round_ = measure(_ellipse(14, 14, 0.0))  # about 29 x 29, a larger product
    section = largest_cross_section([None, wide, round_, None])
    assert section["slice"] == 2
    assert section["longest"] == round_.longest
    assert section["unit"] == "px"
    assert largest_cross_section([None, None]) is None
    in_mm = measure(_ellipse(5, 5, 0.0), (1.0, 1.0))
    assert largest_cross_section([wide, in_mm]) is None  # px and mm do not compare

    areas = [0, int(_ellipse(30, 5, 0.0).sum()), int(_ellipse(14, 14, 0.0).sum()), 0]
    summary = case_findings(areas, calipers=[None, wide, round_, None])
    assert summary.largest_cross_section == section
    rows = dict(case_rows(_Stored(summary.to_dict(), 4)))
    assert rows["Largest cross-section"] == f"{round_.text} on slice 3"
    assert case_findings(areas).largest_cross_section is None


class _Stored:
    """The two attributes of a stored case that ``case_rows`` reads."""

    def __init__(self, findings: dict, n_slices: int):
        self.findings = findings
        self.slices = [None] * n_slices


def test_the_calipers_are_drawn_in_yellow_on_a_copy():
    mask = _ellipse(30, 10, 0.4)
    calipers = measure(mask).to_dict()
    picture = np.zeros((256, 256, 3), np.uint8)
    drawn = draw_calipers(picture, calipers)
    assert not picture.any()
    yellow = np.all(drawn == CALIPER_YELLOW, axis=-1)
    # About one pixel per pixel of line length, and all of it on or next to the tumor.
    assert yellow.sum() >= 0.9 * (calipers["longest"] + calipers["perpendicular"]) - 4
    near = np.zeros_like(mask)
    rows, columns = np.nonzero(mask)
    near[
        max(rows.min() - 1, 0) : rows.max() + 2,
        max(columns.min() - 1, 0) : columns.max() + 2,
    ] = True
    assert not (yellow & ~near).any()


def test_the_bounding_box_names_its_first_and_last_pixel_rows_and_columns():
    # Counted from 1, as the slices are: one tumor pixel at 0-based (5, 7) is row 6, column 8.
    one = np.zeros((32, 32), bool)
    one[5, 7] = True
    assert dict(findings_rows(slice_findings(one).to_dict()))["Bounding box"] == (
        "rows 6-6, columns 8-8"
    )
    block = np.zeros((32, 32), bool)
    block[0:4, 10:20] = True
    assert dict(findings_rows(slice_findings(block).to_dict()))["Bounding box"] == (
        "rows 1-4, columns 11-20"
    )
