"""Ship trained checkpoints to ``models/`` with their metadata, then measure them.

    python -m training.export --data-dir DIR [--runs-dir training/runs] [--crossval DIR]
        [--classifier-crossval DIR]

1. Loads ``<runs>/classifier/best.keras`` and ``<runs>/segmenter/best.keras``
   and saves them without optimizer state to ``models/<name>.keras``. Further
   segmenter runs ``<runs>/segmenter_<X>/`` become ensemble members, saved as
   ``models/segmenter_<X>.keras`` and listed under the segmenter's ``ensemble``
   (their probability maps are averaged with the first's; :mod:`brainloc.model_meta`).
   The members used are logged, and ``models/segmenter_<X>.keras`` files an earlier
   export left that are not members now are removed.
2. Sets the classifier's decision threshold and the segmenter's smallest kept
   region, never on the test patients:
   - models trained on the train patients only: chosen on the *validation*
     patients (Youden's J; pipeline Dice per volume);
   - models trained on train+val (``training/recipe.sh``): the threshold the
     recipe's cross-validation chose out of fold (``--crossval``'s
     ``crossval.json``), or 0.5 fixed before training; no region filter.
3. Writes ``models/<name>.json``, the contract inference reads, including the
   scaling scheme the models were trained with, the volume rule's lower
   threshold (``training.metrics.EXTEND_THRESHOLD``, chosen out of fold) and,
   with ``--crossval``, each fold's validation numbers and, from
   ``--classifier-crossval``'s ``crossval.json``, the out-of-fold pipeline numbers.
4. Runs ``training.evaluate`` on the test patients and records those numbers in
   both metadata files (they are reported, never tuned on), with ``"precision":
   "float32"``: every evaluation here runs the models in float32, whatever
   ``BRAINLOC_INFERENCE_PRECISION`` or the machine's ``auto`` would pick.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
from pathlib import Path

import keras
import numpy as np

from brainloc.model_meta import (
    CLASSIFIER_NAME,
    DEFAULT_MODELS_DIR,
    SEGMENTER_NAME,
    out_of_fold_at,
)
from brainloc.preprocessing import CHANNELS, SCALING_UINT8_UNIT
from training.crossval import segmenter_runs
from training.data import (
    SPLITS_FILE,
    list_cases,
    load_cases,
    read_split,
    split_file_label,
    stack,
)
from training.evaluate import evaluate, format_table
from training.metrics import choose_threshold, classification_metrics, extend_threshold_for

log = logging.getLogger("training.export")

VERSION = "2.3.0"
INTENDED_USE = (
    "Research and clinical decision support for adult lower-grade glioma on axial brain MRI "
    "slices (pre-contrast, FLAIR, post-contrast). Not a diagnostic device: every result must be "
    "reviewed by a qualified specialist, who makes the diagnosis."
)
DATASET = (
    "Kaggle lgg-mri-segmentation (Buda et al. 2019; TCGA-LGG via TCIA), 88 development "
    "patients, licence CC BY-NC-SA 4.0; split by patient in training/splits.json"
)


def _training_record(run_dir: Path) -> dict:
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    arguments = json.loads((run_dir / "args.json").read_text())
    # A run recorded before args.json named the split relative to the repository may carry
    # the absolute path of the machine it trained on.
    split_file = split_file_label(arguments.get("split_file", SPLITS_FILE))
    arguments["split_file"] = split_file
    record = {
        "dataset": DATASET,
        "split_file": split_file,
        "patients": arguments.get("train_on", "train"),
        "arguments": arguments,
        "epochs_run": len(rows),
    }
    if rows and rows[0].get("val_loss", "NA") not in ("", "NA"):
        best = min(rows, key=lambda row: float(row["val_loss"]))
        record.update(best_epoch=int(best["epoch"]) + 1, best_val_loss=float(best["val_loss"]))
    elif rows:
        record["final_train_loss"] = float(rows[-1]["loss"])
    return record


def cross_validation_record(crossval_dir: Path, model: str) -> dict:
    """Each fold's last-epoch validation numbers (and their mean) from a recipe's logs."""
    columns = {
        "classifier": ("val_accuracy", "val_auc"),
        "segmenter": ("val_dice_coefficient",),
    }[model]
    folds, split_folds = [], set()
    for fold_dir in sorted(crossval_dir.glob("fold*")):
        rows = list(csv.DictReader((fold_dir / model / "log.csv").open()))
        cases = json.loads((fold_dir / model / "cases.json").read_text())
        arguments = json.loads((fold_dir / model / "args.json").read_text())
        split_folds.add(int(arguments["folds"]))
        last = rows[-1]
        folds.append(
            {
                "fold": int(arguments["fold"]),
                "validation_cases": len(cases["validation"]),
                "epochs": len(rows),
            }
            | {name: round(float(last[name]), 4) for name in columns}
        )
    if len(split_folds) > 1:
        raise SystemExit(f"{crossval_dir}: its fold runs come from different splits")
    record = {
        # How many folds the split has; fewer may have been run (e.g. 2 of 4).
        "split_folds": split_folds.pop() if split_folds else 0,
        "folds": folds,
        "mean": {name: round(float(np.mean([f[name] for f in folds])), 4) for name in columns},
        "note": "patient-level folds of the train+val patients (training.data.patient_folds); "
        "Keras' own validation metrics at the last epoch: threshold 0.5, no flip averaging, "
        "soft Dice over all validation slices",
    }
    summary = crossval_dir / "crossval.json"
    if model == "classifier" and summary.is_file():
        record["out_of_fold"] = json.loads(summary.read_text())
    return record


def choose_classifier_threshold(
    args: argparse.Namespace, cls_meta: dict, val_cases: list[str]
) -> None:
    """Set the decision threshold from validation patients, scored by the shipped pipeline."""
    from brainloc.inference import Pipeline

    images, masks = stack(load_cases(args.data_dir, val_cases))
    labels = masks.reshape(len(masks), -1).any(axis=1)
    scores = Pipeline.load(args.models_dir).classify(images)
    threshold = choose_threshold(labels, scores)
    log.info("classifier threshold from validation patients: %.2f", threshold)
    cls_meta["decision"]["threshold"] = threshold
    cls_meta["metrics"] = {"validation": classification_metrics(labels, scores, threshold)}
    path = args.models_dir / f"{CLASSIFIER_NAME}.json"
    path.write_text(json.dumps(cls_meta, indent=1) + "\n")


def _evaluate_float32(models_dir: Path, data_dir: Path, cases: list[str]) -> dict:
    """``training.evaluate`` of the models (as their metadata now stand) in float32, the
    arithmetic the model card's numbers are stated in (``auto`` may pick bfloat16)."""
    from brainloc.inference import Pipeline

    pipeline = Pipeline.load(models_dir, precision="float32")
    return evaluate(data_dir, models_dir, cases, pipeline=pipeline)


def choose_min_region(args: argparse.Namespace, seg_meta: dict, val_cases: list[str]) -> None:
    """Pick the smallest kept mask region (pixels) by pipeline Dice per volume on val patients.

    Tiny specks far from the lesion are the segmenter's typical false positives;
    dropping regions below a size trades a little sensitivity for precision, so
    the size is chosen on validation patients and written to the metadata.
    """
    scores = {}
    for min_region in (0, 16, 32, 64):
        seg_meta["decision"]["min_region_px"] = min_region
        path = args.models_dir / f"{SEGMENTER_NAME}.json"
        path.write_text(json.dumps(seg_meta, indent=1) + "\n")
        report = _evaluate_float32(args.models_dir, args.data_dir, val_cases)
        scores[min_region] = report["segmentation"]["dice_per_volume_mean"]
        log.info("min_region_px=%d: val Dice per volume %.4f", min_region, scores[min_region])
    best = max(scores, key=lambda size: (round(scores[size], 3), -size))
    seg_meta["decision"]["min_region_px"] = best
    seg_meta["decision"]["min_region_chosen_on"] = {
        "data": "validation patients, pipeline Dice per volume",
        "scores": {str(size): round(value, 4) for size, value in scores.items()},
    }
    (args.models_dir / f"{SEGMENTER_NAME}.json").write_text(json.dumps(seg_meta, indent=1) + "\n")


def use_untuned_decisions(cls_meta: dict, seg_meta: dict) -> None:
    """Decisions for models that trained on every development patient outside the test set.

    No held-out development patients are left to tune on, so the threshold is the one
    cross-validation chose out of fold when its rows exist, else 0.5 (fixed before
    training), and no mask region is filtered.
    """
    out_of_fold = cls_meta["training"].get("cross_validation", {}).get("out_of_fold")
    if out_of_fold:
        cls_meta["decision"]["threshold"] = out_of_fold["threshold"]
        cls_meta["decision"]["chosen_on"] = (
            f"out-of-fold cross-validation rows ({out_of_fold['cases']} patients): "
            f"{out_of_fold['threshold_chosen_by']}"
        )
    else:
        cls_meta["decision"]["threshold"] = 0.5
        cls_meta["decision"]["chosen_on"] = (
            "fixed at 0.5 before training (the validation patients are training patients)"
        )
    cls_meta["metrics"] = {}
    seg_meta["decision"]["min_region_px"] = 0
    seg_meta["decision"]["min_region_chosen_on"] = {
        "data": "not tuned: no held-out development patients after training on train+val"
    }


def set_volume_rule(cls_meta: dict) -> None:
    """Write the volume rule's lower threshold (brainloc.decision) into the decision block."""
    decision = cls_meta["decision"]
    decision["extend_threshold"] = extend_threshold_for(decision["threshold"])
    decision["extend_chosen_on"] = (
        "out-of-fold development patients, never test patients (training.metrics."
        "EXTEND_THRESHOLD; folds numbered from 1, fold 1 is --fold 0): at threshold 0.5 it "
        "raised accuracy and sensitivity on CPU fold 1 (19 patients; uint8/255 classifier: "
        "accuracy 0.954 -> 0.963, slice-p99: 0.955 -> 0.967) and on the v1 models' 9 "
        "validation patients (0.976 -> 0.980); CPU folds 2, 3 and 4, trained after the "
        "choice, confirmed it (slice-p99: 0.955 -> 0.960, 0.974 -> 0.975 and 0.977 -> 0.981; "
        "sensitivity on fold 4 0.953 -> 0.977)"
    )


def _member_metadata(name: str, model: keras.Model, run_dir: Path) -> dict:
    """The ``ensemble.members`` entry of one further segmenter run."""
    record = _training_record(run_dir)
    size = int(model.input_shape[1])
    return {
        "weights": f"{name}.keras",
        "parameters": int(model.count_params()),
        "input": {
            "shape": [size, size, 3],
            "scaling": record["arguments"].get("scaling", SCALING_UINT8_UNIT),
        },
        "training": record,
    }


def _pipeline_dice_out_of_fold(out_of_fold: dict, threshold: float) -> dict | None:
    """The pipeline's Dice per volume out of fold at the shipped threshold with the volume
    rule; None when the cross-validation measured nothing at that threshold."""
    block = out_of_fold_at(out_of_fold, threshold)
    if not block:
        return None
    return {
        "cases": out_of_fold["cases"],
        "slices": out_of_fold["slices"],
        "dice_per_volume_mean": block["dice_per_volume_mean"],
        "dice_per_volume_median": block["dice_per_volume_median"],
        "note": "the cross-validation folds' models (training.crossval), threshold "
        f"{threshold} with the volume rule, at the models' input size",
    }


def _base_metadata(name: str, task: str, model: keras.Model, size: int, scaling: str) -> dict:
    return {
        "name": f"brainloc-{name}",
        "version": VERSION,
        "created": dt.date.today().isoformat(),
        "task": task,
        "weights": f"{name}.keras",
        "framework": f"keras {keras.__version__}",
        "parameters": int(model.count_params()),
        "input": {
            "shape": [size, size, 3],
            "channels": list(CHANNELS),
            "dtype": "uint8",
            "scaling": scaling,
            "resize": "bilinear, antialiased (brainloc.preprocessing.prepare_images)",
        },
        "intended_use": INTENDED_USE,
        "limitations": (
            "Trained on one public dataset of lower-grade glioma (5 institutions). Not validated "
            "on high-grade glioma, metastases, paediatric scans, other sequences or orientations."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--runs-dir", type=Path, default=Path(__file__).resolve().parent / "runs")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument(
        "--split-file", type=Path, default=SPLITS_FILE, help="patient split (its test patients)"
    )
    parser.add_argument(
        "--crossval", type=Path, help="the recipe's output folder for this scheme (fold logs)"
    )
    parser.add_argument(
        "--classifier-crossval",
        type=Path,
        help="the classifier's own cross-validation folder (fold*/classifier logs and "
        "crossval.json), when its recipe differs from the segmenter's (default: --crossval)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    split = read_split(args.split_file)
    # Checked before anything is written, so a wrong folder leaves models/ untouched.
    try:
        available = set(list_cases(args.data_dir))
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    test_cases = [c for c in split["test"] if c in available]
    if not test_cases:
        raise SystemExit(f"{args.data_dir} holds none of the split's test patients to measure")
    args.models_dir.mkdir(parents=True, exist_ok=True)

    classifier = keras.models.load_model(args.runs_dir / "classifier" / "best.keras", compile=False)
    segmenter = keras.models.load_model(args.runs_dir / "segmenter" / "best.keras", compile=False)
    members = [
        (run.name, keras.models.load_model(run / "best.keras", compile=False))
        for run in segmenter_runs(args.runs_dir)[1:]
    ]
    classifier.save(args.models_dir / f"{CLASSIFIER_NAME}.keras")
    segmenter.save(args.models_dir / f"{SEGMENTER_NAME}.keras")
    for name, member in members:
        member.save(args.models_dir / f"{name}.keras")
    names = [SEGMENTER_NAME, *(name for name, _ in members)]
    log.info("segmenter ensemble from %s: %s", args.runs_dir, " + ".join(names))
    # Member weights left by an earlier export would sit beside the new metadata unused.
    for stale in sorted(args.models_dir.glob(f"{SEGMENTER_NAME}_*.keras")):
        if stale.stem not in names:
            log.info("removing %s: not a member of this export's ensemble", stale)
            stale.unlink()

    cls_record = _training_record(args.runs_dir / "classifier")
    seg_record = _training_record(args.runs_dir / "segmenter")
    # Each model declares the scaling its own run trained with (they may differ).
    cls_scaling = cls_record["arguments"].get("scaling", SCALING_UINT8_UNIT)
    seg_scaling = seg_record["arguments"].get("scaling", SCALING_UINT8_UNIT)
    cls_meta = _base_metadata(
        CLASSIFIER_NAME, "classification", classifier, int(classifier.input_shape[1]), cls_scaling
    )
    cls_meta.update(
        architecture="ResNet-family classifier: the ResUNet's residual encoder (stem, residual "
        "levels 16-32-64-128, bottleneck 256) copied from the trained segmenter as initialisation, "
        "then fine-tuned with a BN-ReLU, global average + max pooling, dropout and sigmoid head",
        output={"kind": "probability", "meaning": "P(slice contains tumor)", "range": [0, 1]},
        decision={
            # Placeholder until the threshold is chosen below through the real pipeline.
            "threshold": 0.5,
            "chosen_on": "validation patients, Youden's J",
            # Averaging with the left-right mirror image: for the first models (v1) it raised
            # validation ROC AUC from 0.988 to 0.990 and accuracy at 0.5 from 0.957 to 0.968.
            "test_time_augmentation": "horizontal_flip",
        },
        gradcam_layer="gradcam_target",
        training=cls_record,
    )
    seg_meta = _base_metadata(
        SEGMENTER_NAME, "segmentation", segmenter, int(segmenter.input_shape[1]), seg_scaling
    )
    seg_meta.update(
        architecture="ResUNet: residual encoder 16-32-64-128, bottleneck 256, decoder with skip "
        "connections and bilinear upsampling, sigmoid map; loss focal Tversky "
        "(alpha 0.7, gamma 0.75; Abraham & Khan 2019)",
        output={"kind": "probability_map", "meaning": "P(pixel is tumor)", "range": [0, 1]},
        decision={"mask_threshold": 0.5},
        training=seg_record,
    )
    if members:
        seg_meta["architecture"] += (
            f"; an ensemble of {len(members) + 1} such networks trained apart "
            "(listed under ensemble in segmenter.json), their probability maps averaged before "
            "mask_threshold"
        )
        seg_meta["ensemble"] = {
            "combine": "mean of the members' probability maps (the model named by weights "
            "first), then decision.mask_threshold",
            "members": [
                _member_metadata(name, member, args.runs_dir / name) for name, member in members
            ],
        }
    classifier_crossval = args.classifier_crossval or args.crossval
    if classifier_crossval:
        cls_meta["training"]["cross_validation"] = cross_validation_record(
            classifier_crossval, "classifier"
        )
    if args.crossval:
        seg_meta["training"]["cross_validation"] = cross_validation_record(
            args.crossval, "segmenter"
        )
    for name, meta in ((CLASSIFIER_NAME, cls_meta), (SEGMENTER_NAME, seg_meta)):
        (args.models_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    if "train+val" in (cls_record["patients"], seg_record["patients"]):
        use_untuned_decisions(cls_meta, seg_meta)
    else:
        choose_classifier_threshold(args, cls_meta, split["val"])
        choose_min_region(args, seg_meta, split["val"])
    set_volume_rule(cls_meta)
    # The test run below reads the decisions from these files, so they are final first.
    for name, meta in ((CLASSIFIER_NAME, cls_meta), (SEGMENTER_NAME, seg_meta)):
        (args.models_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")

    report = _evaluate_float32(args.models_dir, args.data_dir, test_cases)
    test_block = {
        "patients": report["counts"]["patients"],
        "slices": report["counts"]["slices"],
        "tumor_slices": report["counts"]["tumor_slices"],
        "seconds_per_slice": report["timing"]["seconds_per_slice"],
        "precision": report["models"]["precision"],
    }
    cls_meta["metrics"]["test"] = {**test_block, **report["classifier"]}
    seg_meta["metrics"] = {
        "test": {**test_block, **report["segmentation"], **report["pipeline"]},
        "note": "pipeline numbers: segmentation runs only on slices the classifier calls positive",
    }
    out_of_fold = cls_meta["training"].get("cross_validation", {}).get("out_of_fold")
    dice = _pipeline_dice_out_of_fold(out_of_fold or {}, cls_meta["decision"]["threshold"])
    if dice:
        seg_meta["metrics"]["out_of_fold"] = dice
    for name, meta in ((CLASSIFIER_NAME, cls_meta), (SEGMENTER_NAME, seg_meta)):
        (args.models_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("Test patients (reported, never tuned on):")
    print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
