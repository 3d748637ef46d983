"""Speed of BrainLoc's pipeline against the seed's, side by side in one process.

    python -m benchmarks.bench_pipeline [--models-dir models] [--data-dir DIR] [--repeats 9]

Run by hand, not by the test suite. Both pipelines are loaded once and warmed
up before anything is timed; every figure is the median of ``--repeats`` runs,
and the pipelines take turns so that background load weighs on both alike.

- Ours: ``brainloc.inference.Pipeline`` with the shipped models (or, when
  they are missing, the :mod:`brainloc.modeling` builders with random weights,
  saved with metadata so the real loading code runs).
- Seed: ResNet50 + dense head and the 16-to-256-filter ResUNet with random
  weights (:mod:`benchmarks.seed_models`), run the way the seed runs a slice:
  classify; if tumor, segment; threshold the map at 0.5. Timed with
  ``predict_on_batch`` (the seed's best case); one row also times
  ``model.predict`` per call, as the seed's notebook does.

Timed: one slice classified and segmented (the worst case per slice, with each
pipeline's own preprocessing; ours with and without the classifier's flip
averaging), ``Pipeline.analyze`` end to end (findings included) on a slice it
calls tumor, so that it segments as the seed's classify + segment always does
(the label names the slice; with no slice called, as with random weights, it
says the row skipped segmentation), and a 40-slice case (ours: ``analyze_case``; seed:
its per-slice loop, segmenting the same slices ours calls positive so both do
the same work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CASE_SLICES = 40


def _median_seconds(*functions, repeats: int) -> list[float]:
    """Median wall time of each function; runs alternate so background load hits all alike."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for function, bucket in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def _random_models_dir() -> Path:
    """Our builders with random weights, saved in the shipped format."""
    from brainloc.modeling import build_resnet_classifier, build_resunet

    out = Path(tempfile.mkdtemp(prefix="brainloc_bench_"))
    for stem, model, task, decision in (
        ("classifier", build_resnet_classifier(256), "classification", {"threshold": 0.5}),
        ("segmenter", build_resunet(128), "segmentation", {"mask_threshold": 0.5}),
    ):
        model.save(out / f"{stem}.keras")
        size = model.input_shape[1]
        meta = {
            "name": f"random-{stem}",
            "version": "0",
            "task": task,
            "weights": f"{stem}.keras",
            "input": {
                "shape": [size, size, 3],
                "channels": ["pre-contrast", "FLAIR", "post-contrast"],
                "scaling": "uint8/255",
            },
            "output": {"kind": "probability"},
            "decision": decision,
        }
        (out / f"{stem}.json").write_text(json.dumps(meta))
    return out


def _load_case(data_dir: Path | None) -> np.ndarray:
    """40 slices: the first Kaggle case with at least 40, or synthetic noise slices."""
    from brainloc.scans import read_scan_path

    if data_dir is not None:
        for case in sorted(p for p in data_dir.rglob("TCGA_*") if p.is_dir()):
            files = sorted(
                (f for f in case.glob("*.tif") if not f.name.endswith("_mask.tif")),
                key=lambda f: int(f.stem.rsplit("_", 1)[1]),
            )
            if len(files) >= CASE_SLICES:
                print(f"case: {case.name}, slices 1-{CASE_SLICES}")
                return np.concatenate([read_scan_path(f).slices for f in files[:CASE_SLICES]])
    print("case: synthetic random slices (no --data-dir with a 40-slice case)")
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(CASE_SLICES, 256, 256, 3), dtype=np.uint8)


class SeedPipeline:
    """The seed's per-slice loop: classify, segment when tumor, threshold at 0.5."""

    def __init__(self, models=None):
        """``models``: (classifier, segmenter) to reuse; default: built with random weights."""
        from benchmarks.seed_models import build_seed_classifier, build_seed_resunet

        if models is None:
            models = build_seed_classifier(), build_seed_resunet()
        self.classifier, self.segmenter = models

    def in_bfloat16(self) -> SeedPipeline:
        """The same models computing in mixed bfloat16, as ours may (same weights)."""
        from brainloc.inference import mixed_bfloat16_copy

        return SeedPipeline(
            (mixed_bfloat16_copy(self.classifier), mixed_bfloat16_copy(self.segmenter))
        )

    @staticmethod
    def _prepare(image: np.ndarray) -> np.ndarray:
        return (image.astype(np.float32) / 255.0)[np.newaxis]

    def classify_and_segment(self, image: np.ndarray) -> np.ndarray:
        batch = self._prepare(image)
        self.classifier.predict_on_batch(batch)
        return self.segmenter.predict_on_batch(batch)[0, ..., 0] >= 0.5

    def classify_and_segment_as_written(self, image: np.ndarray) -> np.ndarray:
        """The same with ``model.predict``, as the seed's notebook calls its models."""
        batch = self._prepare(image)
        self.classifier.predict(batch, verbose=0)
        return self.segmenter.predict(batch, verbose=0)[0, ..., 0] >= 0.5

    def run_case(self, images: np.ndarray, positive: set[int]) -> None:
        for index, image in enumerate(images):
            batch = self._prepare(image)
            self.classifier.predict_on_batch(batch)
            if index in positive:
                self.segmenter.predict_on_batch(batch)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="default: the shipped models")
    parser.add_argument("--data-dir", type=Path, default=None, help="a Kaggle-layout folder")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--case-repeats", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    from brainloc.inference import Pipeline
    from brainloc.model_meta import DEFAULT_MODELS_DIR, models_available

    models_dir = args.models_dir or DEFAULT_MODELS_DIR
    if args.models_dir is None and not models_available():
        print("shipped models missing: timing our architectures with random weights")
        models_dir = _random_models_dir()
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; medians of {args.repeats} runs")
    ours = Pipeline.load(models_dir)  # in BRAINLOC_INFERENCE_PRECISION, as the app runs
    seed = SeedPipeline()
    print(f"ours runs in {ours.precision} (BRAINLOC_INFERENCE_PRECISION; auto: bfloat16 on AMX)")
    print(
        f"ours: {ours.classifier_spec.label} ({ours.classifier.count_params():,} params) + "
        f"{ours.segmenter_spec.label} ({len(ours.segmenters)} x "
        f"{'/'.join(f'{model.count_params():,}' for model in ours.segmenters)} params)"
    )
    print(
        f"seed: ResNet50 head ({seed.classifier.count_params():,} params) + "
        f"ResUNet ({seed.segmenter.count_params():,} params)"
    )

    images = _load_case(args.data_dir)
    one = images[len(images) // 2]
    single = one[np.newaxis]

    parts = (ours.classifier, ours.segmenters, ours.classifier_spec, ours.segmenter_spec)
    # The same models without the metadata's flip averaging, to show what it costs.
    plain = Pipeline(*parts, precision=ours.precision)
    plain.flip_average = False
    # The same pipeline in float32, and the seed in bfloat16, when ours runs in bfloat16:
    # what the precision gains, and the speed-up that is left with both in bfloat16.
    bf16 = ours.precision == "bfloat16"
    exact = Pipeline(*parts, precision="float32") if bf16 else ours
    seed16 = seed.in_bfloat16() if bf16 else seed

    # Warm-up: the first calls trace and compile; never timed.
    for _ in range(2):
        for pipeline in (ours, plain):
            pipeline.classify(single), pipeline.segment(single), pipeline.analyze(one)
        seed.classify_and_segment(one)
    for pipeline in (ours, exact):
        pipeline.analyze_case(images)
    for loop in (seed, seed16):
        loop.run_case(images[:2], {0})

    seed.classify_and_segment_as_written(one)
    positive = {k for k, r in enumerate(ours.analyze_case(images).slices) if r.has_tumor}
    # Pipeline.analyze segments only a slice it calls tumor, while the seed's classify +
    # segment always segments: time it on a called slice (the one nearest the middle), so both
    # do the same work. With no slice called (random weights) it is not like for like.
    middle = len(images) // 2
    called = min(positive, key=lambda k: (abs(k - middle), k)) if positive else None
    analyzed = one if called is None else images[called]
    ours_slice, plain_slice, seed_slice, ours_analyze, seed_written = _median_seconds(
        lambda: (ours.classify(single), ours.segment(single)),
        lambda: (plain.classify(single), plain.segment(single)),
        lambda: seed.classify_and_segment(one),
        lambda: ours.analyze(analyzed),
        lambda: seed.classify_and_segment_as_written(one),
        repeats=args.repeats,
    )
    if called is None:
        analyze_label = "Pipeline.analyze, clean slice (not segmented)"
    else:
        analyze_label = f"Pipeline.analyze, tumor slice {called}, findings"
    ours_case, seed_case, exact_case, seed16_case = _median_seconds(
        lambda: ours.analyze_case(images),
        lambda: seed.run_case(images, positive),
        lambda: exact.analyze_case(images) if bf16 else None,
        lambda: seed16.run_case(images, positive) if bf16 else None,
        repeats=args.case_repeats,
    )

    flip = "with" if ours.flip_average else "without"
    rows = [
        (f"one slice, classify + segment ({flip} flip avg.)", ours_slice, seed_slice),
        ("one slice, classify + segment (no flip avg.)", plain_slice, seed_slice),
        (analyze_label, ours_analyze, seed_slice),
        ("  against the seed as written (model.predict)", ours_analyze, seed_written),
        (f"{CASE_SLICES}-slice case, {len(positive)} segmented", ours_case, seed_case),
        ("  per slice within the case", ours_case / len(images), seed_case / len(images)),
    ]
    if bf16:
        rows += [
            ("  ours in float32 against the seed", exact_case, seed_case),
            ("  both in bfloat16", ours_case, seed16_case),
            ("  ours in bfloat16 against ours in float32", ours_case, exact_case),
        ]
    print()
    print(f"{'measure (seconds, median)':<48} {'ours':>8} {'seed':>8} {'speed-up':>9}")
    print("-" * 76)
    for name, mine, theirs in rows:
        print(f"{name:<48} {mine:8.4f} {theirs:8.4f} {theirs / mine:8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
