"""Findings on synthetic masks whose areas, boxes and sides are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from brainloc.findings import brain_mask, case_findings, slice_findings
from tests.brainloc.scan_factory import synthetic_slice


def _square(top: int, left: int, side: int, shape=(256, 256)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_square_on_the_image_left_is_measured_exactly():
    image = synthetic_slice()
    findings = slice_findings(_square(100, 60, 20), image, spacing_mm=(0.5, 0.8))
    assert findings.area_px == 400
    assert findings.area_mm2 == pytest.approx(400 * 0.4)
    assert findings.bbox == (100, 60, 120, 80)
    assert findings.centroid == pytest.approx((109.5, 69.5))
    assert findings.side == "left"
    assert findings.patient_side == "right"
    assert findings.regions == 1
    assert findings.has_tumor


def test_two_regions_on_the_right_and_share_of_brain():
    image = synthetic_slice()
    mask = _square(100, 150, 10) | _square(140, 170, 10)
    findings = slice_findings(mask, image)
    assert findings.regions == 2
    assert findings.side == "right"
    assert findings.area_mm2 is None
    # The synthetic brain is an ellipse with semi-axes 0.4 * 256 and 0.35 * 256.
    ellipse_area = np.pi * (0.4 * 256) * (0.35 * 256)
    assert findings.brain_area_px == pytest.approx(ellipse_area, rel=0.03)
    assert findings.percent_of_brain == pytest.approx(100 * 200 / findings.brain_area_px)


def test_tumor_across_the_midline_is_midline():
    findings = slice_findings(_square(100, 118, 20), synthetic_slice())
    assert findings.side == "midline"


def test_empty_mask_has_no_tumor_fields():
    findings = slice_findings(np.zeros((256, 256), bool), synthetic_slice(), spacing_mm=(1, 1))
    assert not findings.has_tumor
    assert findings.area_mm2 == 0.0
    assert findings.bbox is None and findings.centroid is None and findings.side is None
    assert findings.regions == 0
    assert findings.to_dict()["bbox"] is None


def test_brain_mask_of_blank_image_is_empty():
    assert not brain_mask(np.zeros((64, 64, 3), np.uint8)).any()


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        slice_findings(np.zeros((10, 10), bool), synthetic_slice())


def test_case_volume_and_largest_slice():
    case = case_findings([0, 100, 300, 0, 50], spacing_mm=(0.5, 0.5), slice_thickness_mm=4.0)
    assert case.tumor_slices == (1, 2, 4)
    assert case.total_area_px == 450
    assert case.largest_slice == 2 and case.largest_area_px == 300
    assert case.volume_ml == pytest.approx(450 * 0.25 * 4.0 / 1000)
    assert case.to_dict()["tumor_slices"] == [1, 2, 4]


def test_one_slice_has_no_volume_even_with_its_thickness():
    # A single DICOM slice records its thickness, but area x thickness is no tumor volume.
    one = case_findings([300], spacing_mm=(0.5, 0.5), slice_thickness_mm=5.0)
    assert one.volume_ml is None and one.largest_area_px == 300
    two = case_findings([300, 0], spacing_mm=(0.5, 0.5), slice_thickness_mm=5.0)
    assert two.volume_ml == pytest.approx(300 * 0.25 * 5.0 / 1000)


def test_case_without_geometry_or_tumor():
    case = case_findings([0, 0, 0])
    assert case.volume_ml is None
    assert case.largest_slice is None and case.tumor_slices == ()
