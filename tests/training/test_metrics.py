"""Evaluation metrics on small arrays with known answers."""

import numpy as np
import pytest

from training.metrics import (
    classification_metrics,
    cross_section_agreement,
    dice,
    roc_auc,
    segmentation_metrics,
    sensitivity_by_tumor_size,
)


def test_dice_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)
    assert roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(1.0)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_classification_metrics_confusion():
    m = classification_metrics(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.3, 0.6, 0.1, 0.2]), 0.5)
    assert m["confusion_matrix"] == {"tp": 1, "fn": 1, "fp": 1, "tn": 2}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(2 / 3)


def test_sensitivity_without_a_tumor_slice_is_undefined_not_zero():
    clean = classification_metrics(np.zeros(4, bool), np.array([0.1, 0.2, 0.7, 0.1]), 0.5)
    assert np.isnan(clean["sensitivity"]) and clean["specificity"] == pytest.approx(0.75)
    tumor = classification_metrics(np.ones(2, bool), np.array([0.9, 0.2]), 0.5)
    assert np.isnan(tumor["specificity"]) and tumor["sensitivity"] == pytest.approx(0.5)


def test_segmentation_metrics_per_volume():
    truth = np.zeros((3, 4, 4), bool)
    truth[1, :2] = True
    predicted = np.zeros_like(truth)
    predicted[1, 1:3] = True  # dice 0.5 on the tumor slice
    predicted[2, 0, 0] = True  # a false-positive slice
    clean = np.zeros((2, 4, 4), bool)
    m = segmentation_metrics({"a": truth, "b": clean}, {"a": predicted, "b": clean})
    assert m["patients_with_tumor"] == 1  # the clean patient does not enter the volume mean
    assert m["dice_per_volume_mean"] == pytest.approx(2 * 4 / (8 + 9))
    assert m["dice_tumor_slices_mean"] == pytest.approx(0.5)
    assert m["false_positive_slice_rate"] == pytest.approx(1 / 4)


def test_sensitivity_by_tumor_size_bins_and_counts():
    # Fractions of the slice area; 0 = no tumor (ignored). Edges 0.5 %, 1.5 %, 5 %.
    fraction = np.array([0.0, 0.001, 0.004, 0.005, 0.01, 0.02, 0.2, 0.0])
    calls = np.array([True, False, True, True, False, True, True, False])
    rows = sensitivity_by_tumor_size(fraction, calls)
    assert [r["area_percent"] for r in rows] == ["<0.5", "0.5-1.5", "1.5-5", ">=5"]
    assert [(r["tumor_slices"], r["called"]) for r in rows] == [(2, 1), (2, 1), (1, 1), (1, 1)]
    assert rows[0]["sensitivity"] == pytest.approx(0.5)
    # The false positive on the clean first slice counts nowhere.
    assert sum(r["called"] for r in rows) == 4


def test_sensitivity_by_tumor_size_empty_bin_and_shape_check():
    rows = sensitivity_by_tumor_size(np.array([0.3]), np.array([False]), edges=(0.1,))
    assert rows == [
        {"area_percent": "<10", "tumor_slices": 0, "called": 0, "sensitivity": None},
        {"area_percent": ">=10", "tumor_slices": 1, "called": 0, "sensitivity": 0.0},
    ]
    with pytest.raises(ValueError, match="calls"):
        sensitivity_by_tumor_size(np.zeros(3), np.zeros(2, bool))


def test_cross_section_agreement_known_values():
    def section(slice_, longest, perpendicular):
        return {"slice": slice_, "longest": longest, "perpendicular": perpendicular, "unit": "px"}

    pairs = [
        (section(5, 40.0, 20.0), section(5, 44.0, 19.0)),  # errors 10 %, 5 %
        (section(8, 50.0, 30.0), section(10, 45.0, 30.0)),  # 10 %, 0 %; two slices away
        (section(3, 20.0, 10.0), section(4, 30.0, 14.0)),  # 50 %, 40 %
        (section(6, 30.0, 20.0), None),  # missed: not measured
        (None, section(2, 10.0, 5.0)),  # no tumor in the truth: not counted
    ]
    agreement = cross_section_agreement(pairs)
    assert agreement == {
        "patients": 4,
        "measured": 3,
        "longest_relative_error_median": pytest.approx(0.10),
        "perpendicular_relative_error_median": pytest.approx(0.05),
        "same_or_adjacent_slice": 2,
    }
    empty = cross_section_agreement([(None, None)])
    assert empty["measured"] == 0 and empty["longest_relative_error_median"] is None
