"""The detection and localisation pipeline the app, the CLI and the evaluation share.

``Pipeline.load()`` reads both models and their metadata (``models/*.json``,
see :mod:`brainloc.model_meta`) once. ``analyze`` / ``analyze_case`` classify
every slice and segment only the slices called tumor (the seed's pipeline);
negative slices get an empty mask. A slice is called tumor by its probability
alone, or, for the slices of one volume, by the volume rule of
:mod:`brainloc.decision`. When the segmenter's metadata names an ensemble, every
member runs on its own scaling and their probability maps are averaged before the
mask threshold. Masks come back at the input's own size.

One Pipeline may serve many Streamlit sessions at once: it holds no
per-request state, and model calls are serialised by a lock (TensorFlow
already spreads one call over every core, so parallel calls would only
contend). :func:`get_pipeline` caches one Pipeline per models directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from brainloc.decision import (
    ensemble_probability_map,
    flip_averaged_probabilities,
    tumor_calls,
    tumor_probabilities,
)
from brainloc.findings import case_findings, slice_findings
from brainloc.gradcam import GradCam
from brainloc.model_meta import (
    CLASSIFIER_NAME,
    DEFAULT_MODELS_DIR,
    SEGMENTER_NAME,
    Member,
    ModelSpec,
    load_spec,
)
from brainloc.preprocessing import prepare_images, probability_map_to_mask
from brainloc.results import CaseResult, SliceResult
from brainloc.settings import PRECISIONS, inference_precision

logger = logging.getLogger(__name__)

__all__ = [
    "CaseResult",
    "ModelsNotFoundError",
    "Pipeline",
    "SliceResult",
    "get_pipeline",
    "tumor_probabilities",
]

DEFAULT_BATCH_SIZE = 16
#: Called with the share of the work done, 0.0 .. 1.0 (fits ``st.progress``).
Progress = Callable[[float], None]


class ModelsNotFoundError(FileNotFoundError):
    """The models directory lacks a model or its metadata."""


_MIXED = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_bfloat16"}}


def cpu_has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (Intel AMX-BF16)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines()
    )


def resolve_precision(precision: str) -> str:
    """``"auto"`` to what this machine runs fastest without losing agreement: bfloat16 only on
    a CPU-only TensorFlow whose CPU has AMX-BF16 (elsewhere bfloat16 is emulated, and slower).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU") or not cpu_has_amx_bf16():
        return "float32"
    return "bfloat16"


def mixed_bfloat16_copy(model: keras.Model) -> keras.Model:
    """The same network and weights computing in bfloat16 (variables stay float32).

    Every layer but the inputs and the output layers gets Keras' ``mixed_bfloat16`` policy;
    the output layers stay float32, so the sigmoid and its probabilities keep full precision.
    """
    config = model.get_config()
    outputs = config["output_layers"]
    # One output is stored as [name, node, tensor]; several as a list of those.
    keep = {outputs[0]} if isinstance(outputs[0], str) else {entry[0] for entry in outputs}
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer" and layer["name"] not in keep:
            layer["config"]["dtype"] = dict(_MIXED, config=dict(_MIXED["config"]))
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _compiled_forward(model: keras.Model, input_size: int):
    spec = tf.TensorSpec((None, input_size, input_size, 3), tf.float32)
    return tf.function(lambda batch: model(batch, training=False), input_signature=[spec])


def _as_slices(images) -> list[np.ndarray] | np.ndarray:
    """An (N, H, W, 3) array stays as it is; a sequence may hold slices of different sizes."""
    if isinstance(images, np.ndarray):
        return images[np.newaxis] if images.ndim == 3 else images
    return [np.asarray(image) for image in images]


class Pipeline:
    """Classifier + segmenter with their metadata; see the module docstring."""

    def __init__(
        self,
        classifier: keras.Model,
        segmenter: keras.Model | Sequence[keras.Model],
        classifier_spec: ModelSpec,
        segmenter_spec: ModelSpec,
        precision: str = "float32",
    ):
        """``segmenter``: one model, or one per ``segmenter_spec.members`` (an ensemble).

        ``precision``: "float32" runs the models as trained; "bfloat16" runs a mixed-bfloat16
        copy of each (:func:`mixed_bfloat16_copy`: same weights, arithmetic in bfloat16);
        "auto" is resolved for this machine by :func:`resolve_precision`. Grad-CAM always
        uses the float32 classifier.
        """
        self.precision = resolve_precision(precision)
        self.classifier = classifier
        self.segmenters = (segmenter,) if isinstance(segmenter, keras.Model) else tuple(segmenter)
        if len(self.segmenters) != len(segmenter_spec.members):
            raise ValueError(
                f"{len(self.segmenters)} segmenter models for the "
                f"{len(segmenter_spec.members)} weights files its metadata names"
            )
        self.classifier_spec = classifier_spec
        self.segmenter_spec = segmenter_spec
        self._lock = threading.Lock()
        self._gradcam: GradCam | None = None
        # One graph per model with a free batch dimension: any batch size runs
        # without retracing (Keras' predict_on_batch retraces on new sizes).
        compute = mixed_bfloat16_copy if self.precision == "bfloat16" else (lambda model: model)
        self._run = {
            id(classifier): _compiled_forward(compute(classifier), classifier_spec.input_size)
        }
        for model in self.segmenters:
            self._run[id(model)] = _compiled_forward(compute(model), segmenter_spec.input_size)
        self.min_region_px = int(segmenter_spec.raw.get("decision", {}).get("min_region_px", 0))
        # "horizontal_flip": average P(tumor) over the slice and its left-right mirror,
        # as the classifier metadata's decision block asks (chosen on validation patients).
        tta = classifier_spec.raw.get("decision", {}).get("test_time_augmentation")
        if tta not in (None, "horizontal_flip"):
            raise ValueError(f"unknown test_time_augmentation {tta!r} in classifier metadata")
        self.flip_average = tta == "horizontal_flip"
        # The same for the segmenter: each member's map averaged with its mirror's.
        segmenter_tta = segmenter_spec.raw.get("decision", {}).get("test_time_augmentation")
        if segmenter_tta not in (None, "horizontal_flip"):
            raise ValueError(
                f"unknown test_time_augmentation {segmenter_tta!r} in segmenter metadata"
            )
        self.segmenter_flip_average = segmenter_tta == "horizontal_flip"

    @classmethod
    def load(
        cls, models_dir: Path | str = DEFAULT_MODELS_DIR, precision: str | None = None
    ) -> Pipeline:
        """Load both models named by their metadata files in ``models_dir``.

        ``precision``: see :meth:`__init__`; None takes ``BRAINLOC_INFERENCE_PRECISION``
        (default "auto", :func:`brainloc.settings.inference_precision`).

        Raises:
            ModelsNotFoundError: a metadata or weights file is missing.
            ValueError: the metadata is malformed.
        """
        models_dir = Path(models_dir)
        try:
            classifier_spec = load_spec(models_dir, CLASSIFIER_NAME)
            segmenter_spec = load_spec(models_dir, SEGMENTER_NAME)
        except FileNotFoundError as exc:
            raise ModelsNotFoundError(
                f"the trained models are not available in {models_dir} ({exc})"
            ) from exc
        # Importing the builders registers the project's custom Keras objects.
        import brainloc.modeling  # noqa: F401

        logger.info("loading %s and %s", classifier_spec.label, segmenter_spec.label)
        classifier = keras.models.load_model(classifier_spec.weights_path, compile=False)
        segmenters = [
            keras.models.load_model(member.weights_path, compile=False)
            for member in segmenter_spec.members
        ]
        if precision is None:
            precision = inference_precision()
        pipeline = cls(classifier, segmenters, classifier_spec, segmenter_spec, precision)
        logger.info("models run in %s", pipeline.precision)
        return pipeline

    @property
    def model_versions(self) -> dict[str, str]:
        return {"classifier": self.classifier_spec.label, "segmenter": self.segmenter_spec.label}

    @staticmethod
    def _prepare(chunk, size: int, scaling: str) -> np.ndarray:
        if isinstance(chunk, np.ndarray):
            return prepare_images(chunk, size, scaling)
        return np.concatenate([prepare_images(image, size, scaling) for image in chunk])

    def _batches(self, images, spec: ModelSpec, batch_size: int):
        for start in range(0, len(images), batch_size):
            yield (
                start,
                self._prepare(images[start : start + batch_size], spec.input_size, spec.scaling),
            )

    def _takes_classifier_input(self, member: Member) -> bool:
        """Whether ``member`` takes the classifier's input size and scaling, so that it can
        reuse the classifier's prepared slices."""
        spec = self.classifier_spec
        return (member.input_size, member.scaling) == (spec.input_size, spec.scaling)

    def _predict(self, model: keras.Model, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run[id(model)](tf.constant(batch)).numpy()

    def classify(
        self, images, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
    ) -> np.ndarray:
        """P(tumor) for uint8 (N, H, W, 3) slices (or a list of (H, W, 3)); float (N,)."""
        return self._classify(_as_slices(images), batch_size, progress)[0]

    def _classify(
        self, images, batch_size: int, progress: Progress | None, keep_from: float | None = None
    ):
        """Probabilities, plus the prepared model input of every slice whose probability is at
        least ``keep_from`` (the lowest that can be called tumor), when ``keep_from`` is set."""
        out = np.zeros(len(images), dtype=np.float64)
        kept: dict[int, np.ndarray] = {}
        for start, batch in self._batches(images, self.classifier_spec, batch_size):
            end = start + len(batch)
            if self.flip_average:
                probability = flip_averaged_probabilities(
                    lambda both: self._predict(self.classifier, both), batch
                )
            else:
                probability = tumor_probabilities(self._predict(self.classifier, batch))
            out[start:end] = probability
            if keep_from is not None:
                for offset in np.nonzero(probability >= keep_from)[0]:
                    kept[start + int(offset)] = batch[offset].copy()  # not a view: frees the batch
            if progress:
                progress(end / len(images))
        return out, kept

    def segment(
        self, images, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
    ) -> list[np.ndarray]:
        """bool (H, W) masks, each at its slice's own size."""
        return self._segment(_as_slices(images), batch_size, progress)

    def _segment(
        self, images, batch_size: int, progress: Progress | None, prepared=None
    ) -> list[np.ndarray]:
        """Masks of ``images``; an ensemble's probability maps are averaged before the threshold.

        ``prepared``: the classifier's input for these same slices, reused by every member
        that takes the classifier's input size and scaling instead of preparing it again.
        """
        members = [
            (model, member.input_size, member.scaling)
            for model, member in zip(self.segmenters, self.segmenter_spec.members, strict=True)
        ]
        spec = self.classifier_spec
        masks: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            mean = ensemble_probability_map(
                members,
                chunk,
                self._prepare,
                self._predict,
                None
                if prepared is None
                else (spec.input_size, spec.scaling, prepared[start : start + batch_size]),
                flip=self.segmenter_flip_average,
            )
            for offset, probability in enumerate(mean):
                shape = chunk[offset].shape[:2]
                mask = probability_map_to_mask(probability, shape, self.segmenter_spec.threshold)
                masks.append(self._drop_small_regions(mask))
            if progress:
                progress(len(masks) / len(images))
        return masks

    def _drop_small_regions(self, mask: np.ndarray) -> np.ndarray:
        if self.min_region_px <= 0 or not mask.any():
            return mask
        from scipy import ndimage

        labels, count = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())
        keep = sizes >= self.min_region_px
        keep[0] = False
        return keep[labels]

    def analyze(
        self, image: np.ndarray, *, spacing_mm: tuple[float, float] | None = None, name: str = ""
    ) -> SliceResult:
        """Analyse one uint8 (H, W, 3) slice (channels pre-contrast, FLAIR, post-contrast)."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"expected one (H, W, 3) slice, got shape {image.shape}")
        case = self.analyze_case(image[np.newaxis], spacing_mm=spacing_mm, names=[name])
        return case.slices[0]

    def analyze_case(
        self,
        images,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        spacing_mm: tuple[float, float] | None = None,
        slice_thickness_mm: float | None = None,
        names: Sequence[str] | None = None,
        progress: Progress | None = None,
        volume: bool = False,
        gaps_after: Sequence[int] = (),
    ) -> CaseResult:
        """Analyse a stack of slices in batches.

        Args:
            images: uint8 (N, H, W, 3), or a sequence of (H, W, 3) slices.
            volume: True when the slices are one volume in slice order; the tumor calls
                then follow the volume rule (:func:`brainloc.decision.tumor_calls` with the
                metadata's ``extend_threshold``). False: each slice is decided alone.
            gaps_after: for a volume, the slices followed by missing slices
                (:attr:`brainloc.scans.Scan.gaps_after`); the volume rule does not join
                calls across them.
            batch_size: slices per model call.
            spacing_mm, slice_thickness_mm: geometry for mm² and mL findings.
            names: one label per slice.
            progress: called with the share done (0.0 .. 1.0) after each batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = _as_slices(images)
        total = len(images)
        if total == 0:
            raise ValueError("no slices to analyse")
        if names is not None and len(names) != total:
            raise ValueError(f"{len(names)} names for {total} slices")
        threshold = self.classifier_spec.threshold
        # A segmenter (or ensemble member) that takes the classifier's input reuses the
        # classifier's prepared slices instead of preparing them again.
        shared = any(map(self._takes_classifier_input, self.segmenter_spec.members))
        extend = self.classifier_spec.extend_threshold if volume else None
        # Segmenting costs about as much per slice as classifying; split the bar accordingly.
        probabilities, kept = self._classify(
            images,
            batch_size,
            (lambda done: progress(0.5 * done)) if progress else None,
            (threshold if extend is None else extend) if shared else None,
        )
        calls = tumor_calls(probabilities, threshold, extend, gaps_after if volume else ())
        positive = np.nonzero(calls)[0]
        masks = [np.zeros(images[k].shape[:2], dtype=bool) for k in range(total)]
        if positive.size:
            on_batch = (lambda done: progress(0.5 + 0.5 * done)) if progress else None
            chosen = [images[k] for k in positive]
            prepared = np.stack([kept[int(k)] for k in positive]) if shared else None
            segmented = self._segment(chosen, batch_size, on_batch, prepared)
            for index, mask in zip(positive, segmented, strict=True):
                masks[index] = mask
        versions = self.model_versions
        results = tuple(
            SliceResult(
                tumor_probability=float(probabilities[k]),
                has_tumor=bool(calls[k]),
                mask=masks[k],
                findings=slice_findings(masks[k], images[k], spacing_mm),
                threshold=threshold,
                model_versions=versions,
                name=names[k] if names is not None else "",
            )
            for k in range(total)
        )
        if progress:
            progress(1.0)
        summary = case_findings(
            [r.tumor_area_px for r in results],
            spacing_mm,
            slice_thickness_mm,
            [r.findings.calipers for r in results],
        )
        return CaseResult(results, summary, versions, spacing_mm, slice_thickness_mm)

    def analyze_scan(
        self, scan, *, batch_size: int = DEFAULT_BATCH_SIZE, progress=None
    ) -> CaseResult:
        """Analyse a :class:`brainloc.scans.Scan`, keeping its names and geometry.

        A scan of several slices (a DICOM series, a NIfTI or multi-page TIFF volume, the
        numbered slices of one case) is ordered, so it gets the volume rule, which does not
        join slices across a gap in a DICOM series (``scan.gaps_after``)."""
        return self.analyze_case(
            scan.slices,
            batch_size=batch_size,
            spacing_mm=scan.spacing_mm,
            slice_thickness_mm=scan.slice_thickness_mm,
            names=scan.names,
            progress=progress,
            volume=scan.n_slices > 1,
            gaps_after=scan.gaps_after,
        )

    def gradcam(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM of the classifier for one uint8 (H, W, 3) slice: float (H, W) in [0, 1]."""
        image = np.asarray(image)
        batch = prepare_images(image, self.classifier_spec.input_size, self.classifier_spec.scaling)
        with self._lock:
            if self._gradcam is None:
                layer = self.classifier_spec.raw.get("gradcam_layer")
                self._gradcam = GradCam(self.classifier, layer)
            return self._gradcam(batch, image.shape[:2])[0]


_pipelines: dict[Path, Pipeline] = {}
_pipelines_lock = threading.Lock()


def get_pipeline(models_dir: Path | str = DEFAULT_MODELS_DIR) -> Pipeline:
    """The process-wide Pipeline for ``models_dir``, loaded on first use only."""
    key = Path(models_dir).resolve()
    with _pipelines_lock:
        if key not in _pipelines:
            _pipelines[key] = Pipeline.load(key)
        return _pipelines[key]
