"""Evaluation metrics, as pure numpy functions.

Dice per volume follows Buda et al. 2019: a patient's predicted slice masks are
stacked into a volume and compared with the stacked ground truth; the mean is
taken over patients that have tumor.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu


def dice(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean arrays of any shape; 1.0 when both are empty."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    total = truth.sum() + prediction.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(truth, prediction).sum() / total)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half)."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    statistic = mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(statistic / (len(positives) * len(negatives)))


def roc_curve(labels: np.ndarray, scores: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """False and true positive rates at evenly spaced thresholds (for the model card)."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    thresholds = np.linspace(0.0, 1.0, points)
    tpr = [float((scores[labels] >= t).mean()) if labels.any() else 0.0 for t in thresholds]
    fpr = [float((scores[~labels] >= t).mean()) if (~labels).any() else 0.0 for t in thresholds]
    return {"threshold": thresholds.round(4).tolist(), "fpr": fpr, "tpr": tpr}


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, calls: np.ndarray | None = None
) -> dict:
    """Accuracy, sensitivity, specificity, ROC AUC and the confusion matrix at a threshold.

    ``calls`` are the pipeline's own tumor calls when they are not simply
    ``scores >= threshold`` (the volume rule, :mod:`brainloc.decision`); the ROC AUC
    always comes from the scores.
    """
    labels = np.asarray(labels, bool)
    predicted = np.asarray(scores, float) >= threshold if calls is None else np.asarray(calls, bool)
    tp = int(np.sum(predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    return {
        "accuracy": (tp + tn) / max(1, len(labels)),
        # Undefined (NaN, written as null in JSON) without a tumor slice or a clean one: 0.0
        # would read as "found none" where there was nothing to find.
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "roc_auc": roc_auc(labels, scores),
        "threshold": threshold,
        "confusion_matrix": {"tp": tp, "fn": fn, "fp": fp, "tn": tn},
    }


def segmentation_metrics(
    truth_by_patient: dict[str, np.ndarray], predicted_by_patient: dict[str, np.ndarray]
) -> dict:
    """Dice per volume (mean/median over patients with tumor), Dice on tumor slices, FP slice rate.

    Args:
        truth_by_patient: patient -> (N, H, W) bool ground-truth volume.
        predicted_by_patient: patient -> (N, H, W) bool predicted volume.
    """
    volume_dice, slice_dice = [], []
    false_positive, negative_slices = 0, 0
    for patient, truth in truth_by_patient.items():
        predicted = predicted_by_patient[patient]
        if truth.shape != predicted.shape:
            raise ValueError(f"{patient}: truth {truth.shape} vs prediction {predicted.shape}")
        if truth.any():
            volume_dice.append(dice(truth, predicted))
        has_truth = truth.reshape(len(truth), -1).any(axis=1)
        has_prediction = predicted.reshape(len(predicted), -1).any(axis=1)
        slice_dice.extend(dice(truth[i], predicted[i]) for i in np.flatnonzero(has_truth))
        false_positive += int(np.sum(has_prediction & ~has_truth))
        negative_slices += int(np.sum(~has_truth))
    return {
        "dice_per_volume_mean": float(np.mean(volume_dice)) if volume_dice else float("nan"),
        "dice_per_volume_median": float(np.median(volume_dice)) if volume_dice else float("nan"),
        "dice_tumor_slices_mean": float(np.mean(slice_dice)) if slice_dice else float("nan"),
        "false_positive_slice_rate": false_positive / max(1, negative_slices),
        "patients_with_tumor": len(volume_dice),
    }


#: Upper edges of the tumor-size bins for :func:`sensitivity_by_tumor_size`, as the fraction of
#: the slice's area the true tumor covers: on a 256 x 256 slice, 0.5 % is 328 pixels, 1.5 % is
#: 983 and 5 % is 3,277. A fraction does not depend on the resolution a model works at.
TUMOR_SIZE_EDGES = (0.005, 0.015, 0.05)


def sensitivity_by_tumor_size(
    tumor_fraction: np.ndarray, calls: np.ndarray, edges: tuple[float, ...] = TUMOR_SIZE_EDGES
) -> list[dict]:
    """How many tumor slices the pipeline called, by the size of the tumor on the slice.

    ``tumor_fraction`` is each slice's true tumor area over its whole area, ``calls`` the
    pipeline's tumor calls; slices without tumor are ignored. One row per bin, smallest
    first: ``area_percent`` (the bin, e.g. ``"0.5-1.5"``), ``tumor_slices``, ``called`` and
    ``sensitivity`` (None for an empty bin). A tumor's first and last sections are small,
    so this shows where a negative call is least reliable.
    """
    fraction = np.asarray(tumor_fraction, float)
    calls = np.asarray(calls, bool)
    if fraction.shape != calls.shape:
        raise ValueError(f"tumor_fraction {fraction.shape} vs calls {calls.shape}")
    bounds = [0.0, *edges, np.inf]
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        in_bin = (fraction > 0.0) & (fraction >= low) & (fraction < high)
        count, called = int(in_bin.sum()), int(calls[in_bin].sum())
        if low == 0.0:
            label = f"<{high * 100:g}"
        elif high == np.inf:
            label = f">={low * 100:g}"
        else:
            label = f"{low * 100:g}-{high * 100:g}"
        rows.append(
            {
                "area_percent": label,
                "tumor_slices": count,
                "called": called,
                "sensitivity": called / count if count else None,
            }
        )
    return rows


#: The volume rule's lower threshold (brainloc.decision) that export writes into the classifier
#: metadata. Chosen on out-of-fold development patients, never on test patients: with the
#: classifier threshold at 0.5 it raised accuracy and sensitivity on all three sets we have
#: (CPU ``--fold 0`` with uint8/255 and with slice-p99 classifiers, 19 patients each; the v1 models
#: on their 9 validation patients), and 0.2 lies inside the range (0.15-0.3) that was flat or
#: best on each. The later CPU folds (``--fold`` 1, 2 and 3, trained after the choice) confirmed
#: it for the slice-p99 classifier: accuracy 0.955 -> 0.960, 0.974 -> 0.975, 0.977 -> 0.981
#: (uint8/255 on ``--fold 1``: 0.949 -> 0.949, sensitivity up).
EXTEND_THRESHOLD = 0.2


def extend_threshold_for(threshold: float) -> float:
    """The volume rule's lower threshold for a classifier threshold (never above it)."""
    return min(EXTEND_THRESHOLD, threshold)


#: Thresholds searched when a decision threshold is chosen (0.05 to 0.95, step 0.01).
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold on THRESHOLD_GRID with the highest Youden's J (sensitivity + specificity).

    Only ever called on patients that are not test patients (validation or out-of-fold).
    """

    def youden(t: float) -> float:
        metrics = classification_metrics(labels, scores, float(t))
        return float(np.nan_to_num(metrics["sensitivity"]) + np.nan_to_num(metrics["specificity"]))

    return float(max(THRESHOLD_GRID, key=youden))


def cross_section_agreement(pairs: list[tuple[dict | None, dict | None]]) -> dict:
    """How the largest cross-section of the predicted masks agrees with the truth's.

    Args:
        pairs: per patient, (truth, predicted) as
            :func:`brainloc.calipers.largest_cross_section` gives them (None: no tumor).

    Returns:
        ``patients`` (with tumor in the truth), ``measured`` (of those, with a predicted
        cross-section), the medians of the relative errors |predicted - truth| / truth of the
        longest and of the perpendicular diameter, and how many predicted cross-sections lie
        on the truth's slice or the next one (``same_or_adjacent_slice``).
    """
    truths = [(t, p) for t, p in pairs if t]
    both = [(t, p) for t, p in truths if p]

    def median_error(key: str) -> float | None:
        if not both:
            return None
        return float(np.median([abs(p[key] - t[key]) / t[key] for t, p in both]))

    return {
        "patients": len(truths),
        "measured": len(both),
        "longest_relative_error_median": median_error("longest"),
        "perpendicular_relative_error_median": median_error("perpendicular"),
        "same_or_adjacent_slice": sum(abs(t["slice"] - p["slice"]) <= 1 for t, p in both),
    }
