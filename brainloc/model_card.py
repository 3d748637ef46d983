"""What the model card page shows, read from the models' metadata files.

The metadata (``models/<name>.json``, see :mod:`brainloc.model_meta`) is the only source:
architecture, training data and split, thresholds, intended use and the test metrics, with
the confusion matrix, ROC curve and tumor slices found by tumor size when the export wrote
them. Missing parts are simply left out, so the page works with any valid metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainloc.model_meta import CLASSIFIER_NAME, SEGMENTER_NAME, load_spec, out_of_fold_at

#: Metric keys shown as headline numbers, with their labels, in display order.
HEADLINE_METRICS = (
    ("accuracy", "Accuracy"),
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("roc_auc", "ROC AUC"),
    ("dice_per_volume_mean", "Dice per volume (mean)"),
    ("dice_per_volume_median", "Dice per volume (median)"),
    ("dice_tumor_slices_mean", "Dice on tumor slices (mean)"),
    ("false_positive_slice_rate", "False-positive slice rate"),
)


@dataclass(frozen=True)
class ModelCard:
    """One model's card content."""

    stem: str
    label: str
    task: str
    created: str
    architecture: str
    intended_use: str
    input_description: str
    thresholds: dict[str, Any]
    decision_text: str
    training_summary: str
    training: dict[str, Any]
    headline: list[tuple[str, float]]
    metrics: dict[str, Any] = field(repr=False)
    confusion: list[list[int]] | None = None
    roc: tuple[list[float], list[float], float | None] | None = None
    found_by_size: list[dict[str, str]] = field(default_factory=list)


def _metric_block(metrics: dict[str, Any]) -> dict[str, Any]:
    """The test metrics if present, else the validation ones, else the top level."""
    for key in ("test", "validation"):
        if isinstance(metrics.get(key), dict):
            return metrics[key]
    return metrics


def _confusion(block: dict[str, Any]) -> list[list[int]] | None:
    matrix = block.get("confusion_matrix")
    if isinstance(matrix, dict) and {"tp", "fn", "fp", "tn"} <= set(matrix):
        # Rows: truth (no tumor, tumor); columns: prediction (no tumor, tumor).
        return [[int(matrix["tn"]), int(matrix["fp"])], [int(matrix["fn"]), int(matrix["tp"])]]
    if isinstance(matrix, list) and len(matrix) == 2 and all(len(row) == 2 for row in matrix):
        return [[int(value) for value in row] for row in matrix]
    return None


def _roc(block: dict[str, Any]) -> tuple[list[float], list[float], float | None] | None:
    curve = block.get("roc_curve")
    if isinstance(curve, dict) and curve.get("fpr") and curve.get("tpr"):
        auc = block.get("roc_auc")
        return list(curve["fpr"]), list(curve["tpr"]), float(auc) if auc is not None else None
    return None


def _out_of_fold_block(raw: dict[str, Any]) -> dict[str, Any]:
    """The out-of-fold numbers at the shipped decision (threshold and volume rule), if any."""
    out_of_fold = (raw.get("training") or {}).get("cross_validation", {}).get("out_of_fold") or {}
    return out_of_fold_at(out_of_fold, (raw.get("decision") or {}).get("threshold"))


def _found_by_size(raw: dict[str, Any], block: dict[str, Any]) -> list[dict[str, str]]:
    """Tumor slices found per tumor-size bin, "found of total (share)", one row per bin, with a
    column for the test patients and one for the out-of-fold development patients."""
    columns = {
        "test patients": block.get("sensitivity_by_tumor_size"),
        "development patients, out of fold": _out_of_fold_block(raw).get(
            "sensitivity_by_tumor_size"
        ),
    }
    rows: dict[str, dict[str, str]] = {}
    for column, bins in columns.items():
        for size in bins if isinstance(bins, list) else []:
            row = rows.setdefault(
                size["area_percent"], {"tumor area (% of the slice)": size["area_percent"]}
            )
            share = "-" if size["sensitivity"] is None else f"{size['sensitivity']:.0%}"
            row[column] = f"{size['called']} of {size['tumor_slices']} ({share})"
    return list(rows.values())


def _input_description(raw: dict[str, Any]) -> str:
    spec = raw.get("input", {})
    shape = "x".join(str(v) for v in spec.get("shape", []))
    channels = ", ".join(spec.get("channels", []))
    text = f"{shape} ({channels}), scaling {spec.get('scaling', '?')}"
    members = (raw.get("ensemble") or {}).get("members") or []
    for member in members:
        text += (
            f"; ensemble member {member.get('weights', '?')}: scaling "
            f"{(member.get('input') or {}).get('scaling', '?')}"
        )
    if members:
        text += f" (the mean of {len(members) + 1} probability maps is thresholded)"
    return text


#: Keras' validation metric names as a reader says them.
_METRIC_WORDS = {"val_accuracy": "accuracy", "val_auc": "ROC AUC", "val_dice_coefficient": "Dice"}


def _training_summary(training: dict[str, Any]) -> str:
    """The training data and split in one sentence, from whichever keys the export wrote."""
    parts = [str(training[key]) for key in ("dataset", "data") if training.get(key)]
    split_file = training.get("split_file")
    if split_file and not any(str(split_file) in part for part in parts):
        parts.append(f"split file {split_file}")
    if training.get("patients"):
        parts.append(f"trained on the {training['patients']} patients")
    if training.get("best_epoch") is not None:
        parts.append(f"best epoch {training['best_epoch']}")
    record = training.get("cross_validation") or {}
    folds, mean = record.get("folds") or [], record.get("mean") or {}
    if folds and mean:
        numbers = ", ".join(
            f"{_METRIC_WORDS.get(key, key.removeprefix('val_'))} {value:.3f}"
            for key, value in mean.items()
        )
        split = int(record.get("split_folds") or len(folds))
        run = f"{len(folds)}-fold" if len(folds) == split else f"{len(folds)} of {split} folds of"
        parts.append(f"{run} patient cross-validation, mean {numbers}")
    return "; ".join(parts)


def _out_of_fold_dice(metrics: dict[str, Any]) -> str:
    """The segmenter's out-of-fold pipeline Dice per volume in words, when the export wrote it."""
    block = metrics.get("out_of_fold")
    if not isinstance(block, dict) or not isinstance(
        block.get("dice_per_volume_mean"), int | float
    ):
        return ""
    text = f"out of fold over {block.get('cases', '?')} development patients, pipeline Dice per "
    text += f"volume {block['dice_per_volume_mean']:.3f}"
    if isinstance(block.get("dice_per_volume_median"), int | float):
        text += f" (median {block['dice_per_volume_median']:.3f})"
    return text


def _decision_text(decision: dict[str, Any], networks: int) -> str:
    """The decision block in sentences a clinician reads; keys it does not know stay as
    ``key: value``. How each threshold was chosen stays in the metadata (``*chosen_on``)."""
    known = {"chosen_on", "extend_chosen_on", "min_region_chosen_on"}
    parts = []
    if isinstance(decision.get("threshold"), int | float):
        text = f"A slice is called tumor when P(tumor) ≥ {decision['threshold']:.2f}"
        if decision.get("test_time_augmentation") == "horizontal_flip":
            text += " (P is the mean over the slice and its left-right mirror)"
        parts.append(text)
        known |= {"threshold", "test_time_augmentation"}
    if isinstance(decision.get("extend_threshold"), int | float):
        parts.append(
            f"in an ordered volume, a slice with P ≥ {decision['extend_threshold']:.2f} is "
            "called tumor too when slices all at or above that connect it to a slice called "
            "tumor (volume rule)"
        )
        known.add("extend_threshold")
    if isinstance(decision.get("mask_threshold"), int | float):
        averaged = f" (the mean of {networks} networks' maps)" if networks > 1 else ""
        if "threshold" not in decision and decision.get("test_time_augmentation") == (
            "horizontal_flip"
        ):
            mirrored = "each map the mean over the slice and its left-right mirror"
            averaged = f" ({averaged[2:-1]}, {mirrored})" if averaged else f" ({mirrored})"
            known.add("test_time_augmentation")
        parts.append(
            f"a pixel is tumor when its probability{averaged} is ≥ {decision['mask_threshold']:.2f}"
        )
        known.add("mask_threshold")
    if isinstance(decision.get("min_region_px"), int | float):
        size = int(decision["min_region_px"])
        parts.append(f"regions under {size} px are dropped" if size > 0 else "no region is dropped")
        known.add("min_region_px")
    parts += [
        f"{key}: {value}"
        for key, value in decision.items()
        if key not in known and isinstance(value, int | float | str)
    ]
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


def card_for(models_dir: Path | str, stem: str) -> ModelCard:
    """Read one model's card.

    Raises:
        FileNotFoundError / ValueError: from :func:`brainloc.model_meta.load_spec`.
    """
    spec = load_spec(models_dir, stem)
    raw = spec.raw
    metrics = raw.get("metrics") or {}
    block = _metric_block(metrics)
    headline = [
        (label, float(block[key]))
        for key, label in HEADLINE_METRICS
        if isinstance(block.get(key), int | float)
    ]
    return ModelCard(
        stem=stem,
        label=spec.label,
        task=spec.task,
        created=str(raw.get("created", "")),
        architecture=str(raw.get("architecture", "")),
        intended_use=str(raw.get("intended_use", "")),
        input_description=_input_description(raw),
        thresholds={
            key: value
            for key, value in (raw.get("decision") or {}).items()
            if isinstance(value, int | float | str)
        },
        decision_text=_decision_text(raw.get("decision") or {}, len(spec.members)),
        training_summary="; ".join(
            part
            for part in (
                _training_summary(raw.get("training") or {}),
                _out_of_fold_dice(metrics),
            )
            if part
        ),
        training=dict(raw.get("training") or {}),
        headline=headline,
        metrics=metrics,
        confusion=_confusion(block),
        roc=_roc(block),
        found_by_size=_found_by_size(raw, block),
    )


def load_cards(models_dir: Path | str) -> tuple[list[ModelCard], list[str]]:
    """The cards of both shipped models, and a message for each one that cannot be read."""
    cards, problems = [], []
    for stem in (CLASSIFIER_NAME, SEGMENTER_NAME):
        try:
            cards.append(card_for(models_dir, stem))
        except (OSError, ValueError) as error:
            problems.append(f"{stem}: {error}")
    return cards, problems


def precision_note(setting: str) -> str:
    """One sentence on the arithmetic the models run in on this server.

    Args:
        setting: ``BRAINLOC_INFERENCE_PRECISION`` (:func:`brainloc.settings.inference_precision`).
    """
    from brainloc.inference import resolve_precision  # loads TensorFlow: only when asked

    precision = resolve_precision(setting)
    why = (
        "chosen automatically for this machine"
        if setting == "auto"
        else "set by BRAINLOC_INFERENCE_PRECISION"
    )
    if precision == "float32":
        return f"On this server the models compute in float32, exactly as trained ({why})."
    return (
        f"On this server the models compute in bfloat16 ({why}: this CPU multiplies bfloat16 "
        "in hardware), with float32 weights and float32 probabilities. The metrics shown were "
        "measured in float32; the full model card below reports how closely the two agree."
    )
