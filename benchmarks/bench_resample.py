"""What combining a case's series costs, beside what analysing the case costs, in one process.

    python -m benchmarks.bench_resample [--models-dir models] [--repeats 5]

Run by hand, not by the test suite. A synthetic case of 24 axial FLAIR slices of 256×256
(5 mm apart) is combined with pre-contrast and post-contrast series three ways
(:func:`brainloc.scan_align.combine_series`):

- all three on the FLAIR grid (nothing to resample: the reference);
- post-contrast at half the matrix (128², twice the pixel spacing);
- post-contrast as a sagittal 3D series of 176 slices of 256×256 (1 mm), the common
  post-contrast protocol.

The combined case is then analysed by the shipped models (``Pipeline.analyze_case``), so the
resampling can be read against the analysis it precedes. Medians of ``--repeats`` runs, the
variants taking turns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _series(orientation, origin, shape, spacing, n_slices, step, seed):
    from brainloc.scan_align import grid_scan

    grey = np.random.default_rng(seed).integers(1, 255, (n_slices, *shape), dtype=np.uint8)
    return grid_scan(
        grey, orientation=orientation, first_position=origin, spacing=spacing, step=step
    )


def main(argv: list[str] | None = None) -> int:
    from brainloc.inference import Pipeline
    from brainloc.model_meta import DEFAULT_MODELS_DIR
    from brainloc.scan_align import combine_series

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    flair = _series(AXIAL, (-115.0, -115.0, -60.0), (256, 256), (0.9, 0.9), 24, 5.0, 1)
    pre = _series(AXIAL, (-115.0, -115.0, -60.0), (256, 256), (0.9, 0.9), 24, 5.0, 2)
    variants = {
        "on the FLAIR grid": pre,
        "half matrix (128²)": _series(
            AXIAL, (-114.55, -114.55, -60.0), (128, 128), (1.8, 1.8), 24, 5.0, 3
        ),
        "sagittal 3D, 176×256×256": _series(
            SAGITTAL, (88.0, -115.0, 60.0), (256, 256), (0.9, 0.9), 176, 1.0, 4
        ),
    }
    pipeline = Pipeline.load(args.models_dir)
    case = combine_series({"pre-contrast": pre, "FLAIR": flair, "post-contrast": pre})
    pipeline.analyze_case(case.slices, volume=True)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in [*variants, "analysis"]}
    for _ in range(args.repeats):
        for name, post in variants.items():
            start = time.perf_counter()
            combine_series({"pre-contrast": pre, "FLAIR": flair, "post-contrast": post})
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        pipeline.analyze_case(case.slices, volume=True)
        times["analysis"].append(time.perf_counter() - start)
    print(f"24 FLAIR slices of 256×256; medians of {args.repeats} ({pipeline.precision})")
    analysis = statistics.median(times["analysis"])
    for name, values in times.items():
        median = statistics.median(values)
        share = "" if name == "analysis" else f"  ({median / analysis:.0%} of the analysis)"
        print(f"  {name:<28} {median * 1000:8.1f} ms{share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
