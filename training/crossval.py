"""Patient-level cross-validation of a training recipe, and its out-of-fold numbers.

    python -m training.crossval predict --pack PACK --folds 4 --fold K \\
        --runs-dir RUN --scaling S --out FOLD.json
    python -m training.crossval summarize FOLD0.json FOLD1.json ... [--json OUT.json]

``predict`` runs one fold's trained pair (``RUN/segmenter/best.keras`` and
``RUN/classifier/best.keras``) on the patients that fold held out, the way the
app does: P(tumor) averaged with the left-right mirror, the segmenter's mask
(threshold 0.5) kept only on slices called positive. Further segmenter runs beside
it (``RUN/segmenter_*/best.keras``, e.g. one trained on another scaling) make an
ensemble, as in the shipped metadata: their probability maps are averaged with the
first's before the threshold. It writes one row per
slice: the label, the probability, the pixel counts Dice needs, at the
model's input size, and the segmenter's highest pixel probability on the slice
(``map_max``; the mask is computed on every slice, so a rule that also asks the
segmenter whether a slice holds tumor can be scored out of fold too).

``summarize`` pools the rows of every fold, so each development patient is
scored by a model that never trained on them. From those out-of-fold rows it
reports accuracy, sensitivity, specificity, ROC AUC and Dice per volume at 0.5
and at Youden's J threshold, each slice decided alone and with the volume rule
(:mod:`brainloc.decision`), and chooses the classifier threshold: the one of
those two with the higher accuracy under the volume rule. This is how a recipe is
chosen and its threshold set without touching the test patients.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

from training.metrics import (
    EXTEND_THRESHOLD,
    choose_threshold,
    classification_metrics,
    extend_threshold_for,
    sensitivity_by_tumor_size,
)


def _trained_scaling(model_dir: Path, default: str) -> str:
    """The scaling a run trained with (its ``args.json``), else ``default``."""
    arguments = model_dir / "args.json"
    if arguments.exists():
        return json.loads(arguments.read_text()).get("scaling", default)
    return default


def _predict(model, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``model.predict`` on ``batch`` padded to whole batches of ``batch_size``.

    Every call then has one input shape: on JAX, a case's last, shorter batch would
    otherwise compile the model again for each new case length (on the H200 the
    four folds' scoring had not finished 4 minutes after training ended).
    """
    padding = -len(batch) % batch_size
    padded = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    return np.asarray(model.predict(padded, batch_size=batch_size, verbose=0))[: len(batch)]


def segmenter_runs(run_dir: Path) -> list[Path]:
    """``run_dir/segmenter`` followed by any ensemble members ``run_dir/segmenter_*``."""
    members = sorted(p for p in run_dir.glob("segmenter_*") if (p / "best.keras").is_file())
    return [run_dir / "segmenter", *members]


def predict_fold(
    pack: Path, cases: list[str], run_dir: Path, scaling: str, segmenter_flip: bool = False
) -> list[dict]:
    """Out-of-fold rows for ``cases`` from the models trained in ``run_dir``.

    Each model sees its own run's scaling (``args.json``), so a pair whose two
    models were trained on different schemes is scored the way the app runs it;
    ``scaling`` is used for a run that does not record one. Several segmenter runs
    (:func:`segmenter_runs`) are averaged map by map before the 0.5 threshold;
    ``segmenter_flip`` averages each map with its left-right mirror's first (the segmenter
    metadata's ``horizontal_flip`` test-time augmentation), so that choice is scored out of
    fold before any metadata asks for it.
    """
    import keras

    import brainloc.modeling  # noqa: F401  (registers the custom loss)
    from brainloc.decision import ensemble_probability_map, flip_averaged_probabilities
    from brainloc.preprocessing import prepare_images, prepare_masks
    from training.pack import read_pack

    classifier = keras.models.load_model(run_dir / "classifier" / "best.keras", compile=False)
    classifier_scaling = _trained_scaling(run_dir / "classifier", scaling)
    runs = segmenter_runs(run_dir)
    print(f"{run_dir}: segmenter " + " + ".join(run.name for run in runs), flush=True)
    segmenters = [
        (keras.models.load_model(d / "best.keras", compile=False), _trained_scaling(d, scaling))
        for d in runs
    ]
    seg_size = int(segmenters[0][0].input_shape[1])
    if any(int(model.input_shape[1]) != seg_size for model, _ in segmenters):
        raise SystemExit(f"{run_dir}: the segmenter runs take different input sizes")
    rows = []
    for data in read_pack(pack, cases):
        size = int(classifier.input_shape[1])
        batch = prepare_images(data.images, size, classifier_scaling)
        probability = flip_averaged_probabilities(partial(_predict, classifier), batch)
        maps = ensemble_probability_map(
            [(model, seg_size, seg_scaling) for model, seg_scaling in segmenters],
            data.images,
            prepare_images,
            _predict,
            (size, classifier_scaling, batch),
            flip=segmenter_flip,
        )[..., 0]
        predicted = maps >= 0.5
        truth = prepare_masks(data.masks, seg_size)[..., 0] > 0
        for index in range(len(batch)):
            rows.append(
                {
                    "case": data.case,
                    "slice": index,
                    "label": bool(truth[index].any() or data.masks[index].any()),
                    "probability": float(probability[index]),
                    "intersection": int(np.sum(predicted[index] & truth[index])),
                    "predicted_px": int(predicted[index].sum()),
                    "map_max": float(maps[index].max()),
                    "truth_px": int(truth[index].sum()),
                    "slice_px": int(truth[index].size),
                }
            )
    return rows


def _by_case(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped per case, each case in slice order (the order the volume rule needs)."""
    cases: dict[str, list[dict]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    return {case: sorted(found, key=lambda row: row["slice"]) for case, found in cases.items()}


def calls_for(rows: list[dict], threshold: float, extend: float | None = None) -> list[bool]:
    """The pipeline's tumor call for every row (grouped by case, in slice order), with the
    volume rule when ``extend`` is given (:func:`brainloc.decision.tumor_calls`)."""
    from brainloc.decision import tumor_calls

    calls = []
    for found in _by_case(rows).values():
        probabilities = [row["probability"] for row in found]
        calls.extend(bool(c) for c in tumor_calls(probabilities, threshold, extend))
    return calls


def pipeline_dice(rows: list[dict], threshold: float, extend: float | None = None) -> dict:
    """Dice per volume (mean, median over cases with tumor): the segmenter's mask kept on the
    slices called tumor at ``threshold`` (and by the volume rule, with ``extend``)."""
    scores = []
    for found in _by_case(rows).values():
        calls = calls_for(found, threshold, extend)
        kept = [row for row, called in zip(found, calls, strict=True) if called]
        intersection = sum(row["intersection"] for row in kept)
        predicted = sum(row["predicted_px"] for row in kept)
        truth = sum(row["truth_px"] for row in found)
        if truth > 0:
            scores.append(2 * intersection / (predicted + truth))
    return {
        "dice_per_volume_mean": float(np.mean(scores)),
        "dice_per_volume_median": float(np.median(scores)),
        "cases_with_tumor": len(scores),
    }


def _tumor_fraction(row: dict) -> float:
    """The share of the slice the true tumor covers at the model's resolution; a tumor slice
    whose tumor vanished in the resize counts as one pixel, so it lands in the smallest bin."""
    if not row["label"]:
        return 0.0
    return max(row["truth_px"], 1) / row["slice_px"]


def summarize(rows: list[dict]) -> dict:
    """Out-of-fold metrics, and the classifier threshold the app should use.

    Scored four ways: at Youden's J threshold and at 0.5, each slice decided alone and
    with the volume rule (``extend_threshold`` EXTEND_THRESHOLD, or the threshold when
    lower), as the app decides an ordered volume. ``threshold`` is whichever of the two
    candidates fixed in advance, 0.5 and Youden's, gives the higher accuracy with the
    volume rule (0.5 on a tie)."""
    rows = [row for found in _by_case(rows).values() for row in found]
    labels = np.array([row["label"] for row in rows])
    scores = np.array([row["probability"] for row in rows])
    youden = choose_threshold(labels, scores)
    report = {
        "youden_threshold": youden,
        "extend_threshold": EXTEND_THRESHOLD,
        "cases": len({row["case"] for row in rows}),
        "slices": len(rows),
    }
    for name, t, extend in (
        ("at_youden", youden, None),
        ("at_youden_volume_rule", youden, extend_threshold_for(youden)),
        ("at_0.5", 0.5, None),
        ("at_0.5_volume_rule", 0.5, extend_threshold_for(0.5)),
    ):
        calls = calls_for(rows, t, extend)
        metrics = classification_metrics(labels, scores, t, calls)
        metrics.update(pipeline_dice(rows, t, extend))
        if all("slice_px" in row for row in rows):
            metrics["sensitivity_by_tumor_size"] = sensitivity_by_tumor_size(
                [_tumor_fraction(row) for row in rows], calls
            )
        report[name] = metrics
    fixed, tuned = report["at_0.5_volume_rule"], report["at_youden_volume_rule"]
    report["threshold"] = youden if tuned["accuracy"] > fixed["accuracy"] else 0.5
    report["threshold_chosen_by"] = (
        "out-of-fold accuracy with the volume rule: Youden's J threshold vs 0.5 (0.5 on a tie)"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict")
    predict.add_argument("--pack", type=Path, required=True)
    predict.add_argument("--folds", type=int, required=True)
    predict.add_argument("--fold", type=int, required=True)
    predict.add_argument("--runs-dir", type=Path, required=True)
    predict.add_argument("--scaling", default="uint8/255")
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--split-file", type=Path)
    predict.add_argument(
        "--segmenter-tta",
        choices=("none", "horizontal_flip"),
        default="none",
        help="test-time augmentation of the segmenter maps (see predict_fold)",
    )
    summary = commands.add_parser("summarize")
    summary.add_argument("rows", type=Path, nargs="+")
    summary.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    if args.command == "predict":
        from training.data import SPLITS_FILE, held_out_fold, read_split

        cases = held_out_fold(read_split(args.split_file or SPLITS_FILE), args.folds, args.fold)
        rows = predict_fold(
            args.pack,
            cases,
            args.runs_dir,
            args.scaling,
            segmenter_flip=args.segmenter_tta == "horizontal_flip",
        )
        args.out.write_text(json.dumps(rows))
        print(f"fold {args.fold}: {len(cases)} cases, {len(rows)} slices -> {args.out}")
        return 0
    rows = [row for path in args.rows for row in json.loads(path.read_text())]
    report = summarize(rows)
    json.dump(report, sys.stdout, indent=1)
    print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
