"""Evaluate the shipped pipeline on any directory in the Kaggle layout.

    python -m training.evaluate --data-dir DIR --json OUT.json [--models-dir models] [--cases ...]

Runs the pipeline exactly as the app does (``brainloc.inference.Pipeline``):
every slice is classified, each case folder is one volume in slice order, so the
tumor calls follow the volume rule of the classifier metadata
(:mod:`brainloc.decision`), slices called tumor are segmented, the others get an
empty mask. ``classifier.single_slice`` adds the classifier's numbers with every
slice decided alone, for comparison. Prints a table (the headline numbers, then one line
per patient, lowest Dice first, so a missed patient stands out) and writes JSON with the keys
``classifier.{accuracy,sensitivity,specificity,roc_auc}``,
``segmentation.{dice_per_volume_mean,dice_per_volume_median,dice_tumor_slices_mean}``,
``pipeline.false_positive_slice_rate``, ``counts.{patients,slices}`` and
``timing.seconds_per_slice``, plus the share of tumor slices found by tumor size
(``classifier.sensitivity_by_tumor_size``), how the diameters the app reports (the largest
cross-section, :mod:`brainloc.calipers`) agree with the truth masks' own
(``measurement.largest_cross_section``), and per-patient detail (``per_case``: slices, tumor
slices, tumor slices called, false-positive slices, Dice per volume, both cross-sections).

Each patient is tagged with its portion of ``training/splits.json`` (``per_case[].split``:
``train``, ``validation``, ``test``, or ``unseen`` for a case the split does not name), and
``counts.by_split`` counts patients per portion. The shipped models were trained on the train
and validation patients, so their numbers are optimistic: when any is included, a warning
line says how many, above the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from brainloc.calipers import largest_cross_section, measure
from brainloc.model_meta import DEFAULT_MODELS_DIR
from training.data import list_cases, load_case
from training.metrics import (
    classification_metrics,
    cross_section_agreement,
    dice,
    roc_curve,
    segmentation_metrics,
    sensitivity_by_tumor_size,
)

log = logging.getLogger("training.evaluate")


#: Portions of ``training/splits.json``, as ``per_case[].split`` names them.
SPLIT_PORTIONS = {"train": "train", "val": "validation", "test": "test"}
UNSEEN = "unseen"


def split_portions(cases: list[str], split: dict | None = None) -> dict[str, str]:
    """Each case's portion of ``split`` (default: the committed ``training/splits.json``):
    ``train``, ``validation``, ``test``, or ``unseen`` when the split does not name it."""
    from training.data import read_split

    split = read_split() if split is None else split
    portion = {case: name for key, name in SPLIT_PORTIONS.items() for case in split[key]}
    return {case: portion.get(case, UNSEEN) for case in cases}


def development_warning(report: dict) -> str | None:
    """The warning line for a report including patients the shipped models were trained on
    (train or validation portion), or None."""
    by_split = report["counts"]["by_split"]
    used = by_split["train"] + by_split["validation"]
    if not used:
        return None
    return (
        f"warning: {used} of {report['counts']['patients']} patients were used to train the "
        f"shipped models ({by_split['train']} train, {by_split['validation']} validation); "
        "their numbers are optimistic (evaluate --split test for held-out patients only)"
    )


def evaluate(
    data_dir: Path,
    models_dir: Path,
    cases: list[str] | None = None,
    *,
    pipeline=None,
    transform=None,
    keep_calls: bool = False,
) -> dict:
    """Run the pipeline over every case and return the metrics dictionary.

    ``pipeline``: an already loaded :class:`brainloc.inference.Pipeline` (default: load
    ``models_dir``). ``transform``: applied to each case's uint8 (N, H, W, 3) slices before
    the pipeline sees them, keeping their size (``training.robustness`` uses it); the truth
    masks are unchanged. ``keep_calls``: add ``slice_calls``, every slice's tumor call in
    case order.
    """
    cases = cases or list_cases(data_dir)
    # Imported here so that `--help` and a bad directory answer without loading TensorFlow.
    from brainloc.inference import Pipeline

    pipeline = pipeline or Pipeline.load(models_dir)
    portions = split_portions(cases)
    labels, scores, calls, tumor_fraction = [], [], [], []
    truth_by_case, predicted_by_case, per_case, sections = {}, {}, [], []
    seconds, slices = 0.0, 0
    pipeline.analyze_case(load_case(data_dir, cases[0]).images[:2])  # warm-up, not timed
    for number, case in enumerate(cases, 1):
        data = load_case(data_dir, case)
        images = data.images if transform is None else transform(data.images)
        start = time.perf_counter()
        results = pipeline.analyze_case(images, volume=True).slices
        seconds += time.perf_counter() - start
        slices += len(data.images)
        probabilities = np.array([r.tumor_probability for r in results])
        predicted = np.stack([r.mask for r in results])
        flat_masks = data.masks.reshape(len(data.masks), -1)
        case_labels = flat_masks.any(axis=1)
        case_calls = np.array([r.has_tumor for r in results], bool)
        labels.extend(case_labels)
        tumor_fraction.extend(flat_masks.mean(axis=1))
        scores.extend(probabilities)
        calls.extend(case_calls)
        truth_by_case[case], predicted_by_case[case] = data.masks, predicted
        # The diameters the app reports, of the model's masks and of the truth's (in px: the
        # Kaggle slices carry no pixel spacing).
        sections.append(
            (
                largest_cross_section([measure(mask) for mask in data.masks]),
                largest_cross_section([r.findings.calipers for r in results]),
            )
        )
        per_case.append(
            {
                "case": case,
                "split": portions[case],
                "slices": len(data.images),
                "tumor_slices": int(case_labels.sum()),
                "tumor_slices_called": int((case_labels & case_calls).sum()),
                "false_positive_slices": int((~case_labels & case_calls).sum()),
                "dice_volume": dice(data.masks, predicted) if data.masks.any() else None,
                "largest_cross_section": {"truth": sections[-1][0], "predicted": sections[-1][1]},
            }
        )
        log.info("%d/%d %s", number, len(cases), case)
    threshold = pipeline.classifier_spec.threshold
    labels, scores = np.array(labels, bool), np.array(scores, float)
    classifier = classification_metrics(labels, scores, threshold, np.array(calls, bool))
    classifier["extend_threshold"] = pipeline.classifier_spec.extend_threshold
    classifier["roc_curve"] = roc_curve(labels, scores)
    classifier["single_slice"] = classification_metrics(labels, scores, threshold)
    classifier["sensitivity_by_tumor_size"] = sensitivity_by_tumor_size(tumor_fraction, calls)
    segmentation = segmentation_metrics(truth_by_case, predicted_by_case)
    return {
        "classifier": classifier,
        "segmentation": {k: v for k, v in segmentation.items() if k != "false_positive_slice_rate"},
        "pipeline": {"false_positive_slice_rate": segmentation["false_positive_slice_rate"]},
        "counts": {
            "patients": len(cases),
            "slices": slices,
            "tumor_slices": int(labels.sum()),
            "by_split": {
                name: sum(p == name for p in portions.values())
                for name in (*SPLIT_PORTIONS.values(), UNSEEN)
            },
        },
        "timing": {"seconds_per_slice": seconds / max(1, slices)},
        "measurement": {"largest_cross_section": cross_section_agreement(sections)},
        "models": {
            "classifier": pipeline.classifier_spec.label,
            "segmenter": pipeline.segmenter_spec.label,
            # BRAINLOC_INFERENCE_PRECISION as resolved on this machine (models/README.md).
            "precision": pipeline.precision,
        },
        "per_case": per_case,
    } | ({"slice_calls": [bool(call) for call in calls]} if keep_calls else {})


def format_table(report: dict) -> str:
    """A readable summary of the headline numbers, then one line per patient, worst first:
    slices, tumor slices, tumor slices the pipeline called, false-positive slices, Dice."""
    rows = [
        ("patients", report["counts"]["patients"], ""),
        (
            "slices (with tumor)",
            f"{report['counts']['slices']} ({report['counts']['tumor_slices']})",
            "",
        ),
        ("classifier accuracy", report["classifier"]["accuracy"], "goal >= 0.98"),
        ("classifier sensitivity", report["classifier"]["sensitivity"], "goal >= 0.96"),
        ("classifier specificity", report["classifier"]["specificity"], "goal >= 0.98"),
        ("classifier ROC AUC", report["classifier"]["roc_auc"], "goal >= 0.995"),
        ("Dice per volume, mean", report["segmentation"]["dice_per_volume_mean"], "goal >= 0.86"),
        ("Dice per volume, median", report["segmentation"]["dice_per_volume_median"], ""),
        ("Dice on tumor slices, mean", report["segmentation"]["dice_tumor_slices_mean"], ""),
        ("false-positive slice rate", report["pipeline"]["false_positive_slice_rate"], ""),
        ("seconds per slice", report["timing"]["seconds_per_slice"], ""),
        ("arithmetic", report["models"]["precision"], "BRAINLOC_INFERENCE_PRECISION"),
    ]
    lines = [f"{'metric':<30} {'value':>14}  note", "-" * 60]
    for name, value, note in rows:
        if isinstance(value, float):
            shown = "-" if math.isnan(value) else f"{value:.4f}"  # nothing to count
        else:
            shown = str(value)
        lines.append(f"{name:<30} {shown:>14}  {note}")
    lines += ["", "tumor slices found, by the tumor's share of the slice area"]
    for size in report["classifier"]["sensitivity_by_tumor_size"]:
        shown = "-" if size["sensitivity"] is None else f"{size['sensitivity']:.3f}"
        lines.append(
            f"{size['area_percent'] + ' %':<12} {size['called']:>5} of {size['tumor_slices']:<5}"
            f" {shown:>6}"
        )
    agreement = report["measurement"]["largest_cross_section"]
    if agreement["measured"]:
        lines += [
            "",
            "largest cross-section (longest x perpendicular diameter) against the truth's: "
            f"median error {agreement['longest_relative_error_median']:.1%} (longest), "
            f"{agreement['perpendicular_relative_error_median']:.1%} (perpendicular); "
            f"{agreement['measured']} of {agreement['patients']} patients measured, "
            f"{agreement['same_or_adjacent_slice']} on the same slice or the next",
        ]
    lines += ["", "per patient, lowest Dice per volume first (- : no tumor in the masks)"]
    lines.append(f"{'case':<26} {'slices':>6} {'tumor':>6} {'found':>6} {'false +':>7} {'Dice':>6}")
    worst_first = sorted(
        report["per_case"],
        key=lambda c: (c["dice_volume"] is None, c["dice_volume"] or 0.0, c["case"]),
    )
    for case in worst_first:
        shown = "-" if case["dice_volume"] is None else f"{case['dice_volume']:.3f}"
        lines.append(
            f"{case['case']:<26} {case['slices']:>6} {case['tumor_slices']:>6} "
            f"{case['tumor_slices_called']:>6} {case['false_positive_slices']:>7} {shown:>6}"
        )
    return "\n".join(lines)


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--models-dir``, ``--cases`` and ``--split``, as this CLI and
    ``training.robustness`` take them (see :func:`selected_cases`)."""
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="a directory in the Kaggle kaggle_3m layout"
    )
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--cases", nargs="*", help="only these case folders (default: all)")
    parser.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="only the cases of this split in training/splits.json",
    )


def selected_cases(args: argparse.Namespace) -> list[str]:
    """The case folders of ``--data-dir`` that ``--cases`` and ``--split`` select.

    Raises:
        FileNotFoundError: no Kaggle layout under ``--data-dir``.
        ValueError: a named case is not there, or nothing is selected.
    """
    available = list_cases(args.data_dir)
    missing = sorted(set(args.cases or ()) - set(available))
    if missing:
        raise ValueError(f"not in {args.data_dir}: {', '.join(missing)}")
    cases = list(dict.fromkeys(args.cases or available))  # a case named twice counts once
    if args.split:
        from training.data import read_split

        chosen = set(cases)
        cases = [case for case in read_split()[args.split] if case in chosen]
    if not cases:
        raise ValueError(f"no cases of {args.data_dir} are selected")
    return cases


def _check_writable(path: Path) -> None:
    """Refuse, before any work, a ``--json`` path that cannot be written."""
    if path.is_dir():
        raise ValueError(f"--json {path} is a folder; give a file name such as {path}/metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    with path.open("a", encoding="utf-8"):
        pass
    if not existed:
        path.unlink()


def _json_safe(value):
    """``value`` with every NaN or infinite float as None: a metric without data (no tumor
    slices in the selection, one class only) is ``null`` in valid JSON, not ``NaN``."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_case_arguments(parser)
    parser.add_argument("--json", type=Path, required=True, help="where to write the metrics JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        # Everything a run could stumble on is checked before the long part: where the JSON
        # goes, and every selected case's files (so a bad case late in the list does not throw
        # away the hour spent on the others).
        _check_writable(args.json)
        cases = selected_cases(args)
        for case in cases:
            load_case(args.data_dir, case)
        report = evaluate(args.data_dir, args.models_dir, cases)
        args.json.write_text(json.dumps(_json_safe(report), indent=1) + "\n", encoding="utf-8")
    except (OSError, ValueError) as exc:  # FileNotFoundError and PermissionError are OSErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warning = development_warning(report)
    if warning:
        print(warning)
    print(format_table(report))
    if warning:
        print(f"\n{warning}")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
