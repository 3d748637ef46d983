"""How the shipped pipeline holds up when a clinic's images differ from the Kaggle slices.

    python -m training.robustness --data-dir DIR [--split test] [--cases ...] [--json OUT.json]

Runs :func:`training.evaluate.evaluate` (the pipeline exactly as the app runs it) on the same
cases once as given and once per input change below, and prints, for each, the headline
metrics and how far the tumor calls moved from the unchanged run. Nothing here feeds back into
the models or their thresholds: it describes them (models/README.md, *Robustness*).

The changes are ones a clinic's data can bring, each applied to every slice of a case:

- ``FLAIR only``: one sequence uploaded, copied into all three channels, as the app does
  with a single-sequence file (``brainloc.scan_normalize``);
- ``16-bit, rescaled``: the slices stored as 16-bit values (x16 + 100), as a DICOM or NIfTI
  export holds them, and rescaled to 8 bits by the app's own reader
  (``brainloc.scan_normalize.build_scan``: each channel from its minimum to its 99.5th
  percentile over the case);
- ``darker x0.75`` and ``brighter x1.25``: overall intensity (clipped at 255);
- ``gamma 0.67`` and ``gamma 1.5``: contrast, beyond the gamma 0.8-1.25 of training's
  augmentation;
- ``noise sd 6``: Gaussian noise of standard deviation 6 (of 255) on signal pixels, seeded;
- ``T1s at half matrix``: the pre-contrast and post-contrast series stored at half the matrix
  (each pixel the mean of a 2×2 block, twice the pixel spacing, as a coarser T1 series of the
  same examination) and resampled onto the FLAIR slices by the app
  (``brainloc.scan_align.combine_series``, by the positions their headers would give).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.evaluate import add_case_arguments, evaluate, selected_cases

Transform = Callable[[np.ndarray], np.ndarray]


def _flair_only(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., 1:2], 3, axis=-1)


def _sixteen_bit(images: np.ndarray) -> np.ndarray:
    from brainloc.scan_normalize import build_scan

    stored = images.astype(np.uint16) * 16 + 100
    return build_scan(stored, label="16-bit copy", source_format="dicom").slices


def _gain(factor: float) -> Transform:
    def apply(images: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(images * factor), 0, 255).astype(np.uint8)

    return apply


def _gamma(power: float) -> Transform:
    def apply(images: np.ndarray) -> np.ndarray:
        return np.rint(255.0 * (images / 255.0) ** power).astype(np.uint8)

    return apply


def _noise(sd: float, seed: int = 0) -> Transform:
    def apply(images: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        noisy = images + rng.normal(0.0, sd, images.shape) * (images > 5)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return apply


def _t1_half_matrix(images: np.ndarray) -> np.ndarray:
    from brainloc.scan_align import combine_series, grid_scan

    n, height, width, _ = images.shape

    def series(grey: np.ndarray, spacing: float):
        first_pixel = (spacing - 1.0) / 2  # the centre of the block the first pixel stands for
        return grid_scan(
            grey,
            orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            first_position=(first_pixel, first_pixel, 0.0),
            spacing=(spacing, spacing),
            step=5.0,
        )

    def half(channel: int) -> np.ndarray:
        blocks = images[..., channel].reshape(n, height // 2, 2, width // 2, 2)
        return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)

    combined = combine_series(
        {
            "pre-contrast": series(half(0), 2.0),
            "FLAIR": series(images[..., 1], 1.0),
            "post-contrast": series(half(2), 2.0),
        }
    )
    return combined.slices


#: Each change's name and what it does to a case's uint8 (N, H, W, 3) slices.
TRANSFORMS: dict[str, Transform] = {
    "FLAIR only": _flair_only,
    "16-bit, rescaled": _sixteen_bit,
    "darker x0.75": _gain(0.75),
    "brighter x1.25": _gain(1.25),
    "gamma 0.67": _gamma(0.67),
    "gamma 1.5": _gamma(1.5),
    "noise sd 6": _noise(6.0),
    "T1s at half matrix": _t1_half_matrix,
}

_HEADLINE = (
    ("accuracy", "classifier", "accuracy"),
    ("sensitivity", "classifier", "sensitivity"),
    ("specificity", "classifier", "specificity"),
    ("Dice/vol", "segmentation", "dice_per_volume_mean"),
)


def _calls(report: dict) -> np.ndarray:
    return np.array(report["slice_calls"], bool)


def run(data_dir: Path, models_dir: Path, cases: list[str]) -> dict:
    """The metrics as given and under each change, with the share of slices whose call moved."""
    from brainloc.inference import Pipeline  # TensorFlow: only once there is work to do

    pipeline = Pipeline.load(models_dir)
    runs = {"as given": evaluate(data_dir, models_dir, cases, pipeline=pipeline, keep_calls=True)}
    for name, transform in TRANSFORMS.items():
        logging.getLogger("training.robustness").info("%s", name)
        runs[name] = evaluate(
            data_dir, models_dir, cases, pipeline=pipeline, transform=transform, keep_calls=True
        )
    reference = _calls(runs["as given"])
    rows = {}
    for name, report in runs.items():
        row = {label: report[group][key] for label, group, key in _HEADLINE}
        row["calls changed"] = float(np.mean(_calls(report) != reference))
        rows[name] = row
    return {
        "models": runs["as given"]["models"],
        "counts": runs["as given"]["counts"],
        "rows": rows,
    }


def format_table(result: dict) -> str:
    labels = [label for label, _, _ in _HEADLINE] + ["calls changed"]
    lines = [f"{'input':<18}" + "".join(f"{label:>15}" for label in labels), "-" * 93]
    for name, row in result["rows"].items():
        lines.append(f"{name:<18}" + "".join(f"{row[label]:>15.3f}" for label in labels))
    counts, models = result["counts"], result["models"]
    lines.append(
        f"\n{counts['patients']} patients, {counts['slices']} slices "
        f"({counts['tumor_slices']} with tumor); {models['classifier']} and "
        f"{models['segmenter']} in {models['precision']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_case_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        result = run(args.data_dir, args.models_dir, selected_cases(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
