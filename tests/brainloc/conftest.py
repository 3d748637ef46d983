"""Fixtures for the brainloc tests: tiny deterministic models, restored LGG slices, shipped models.

The tiny models are built here with plain Keras and saved with metadata in the
shipped format, so the pipeline code runs for real without the trained
weights: the classifier says "tumor" when the post-contrast channel has a
bright patch, the segmenter marks the bright FLAIR pixels. Their answers are
known in advance, which is what lets the tests check exact behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_LGG = REPO_ROOT.parent / "shared" / "lgg"
TINY_SIZE = 32
#: A test-split patient (training/splits.json) with several tumor slices.
LGG_CASE = "TCGA_CS_4944_20010208"


def _metadata(name: str, task: str, weights: str, decision: dict, size: int = TINY_SIZE) -> dict:
    return {
        "name": name,
        "version": "0.0.1",
        "created": "2026-11-25",
        "task": task,
        "weights": weights,
        "input": {
            "shape": [size, size, 3],
            "channels": ["pre-contrast", "FLAIR", "post-contrast"],
            "dtype": "uint8",
            "scaling": "uint8/255",
        },
        "output": {"kind": "probability" if task == "classification" else "probability_map"},
        "decision": decision,
        "intended_use": "tests only",
    }


def build_tiny_models(
    models_dir: Path,
    min_region_px: int = 0,
    segmenter_size: int = TINY_SIZE,
    extend_threshold: float | None = None,
    ensemble: bool = False,
) -> Path:
    """Save a tiny classifier and segmenter with metadata into ``models_dir``.

    ``segmenter_size`` other than the classifier's makes the two models take different inputs;
    ``extend_threshold`` gives the classifier the volume rule (brainloc.decision); ``ensemble``
    adds a second segmenter, ``segmenter_post.keras`` on ``slice-p99`` input, whose map is
    sigmoid(20 * post-contrast - 10), as an ensemble member.
    """
    import keras

    models_dir.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    # Classifier: P(tumor) = sigmoid(20 * max(post-contrast) - 10), i.e. tumor when the
    # brightest post-contrast pixel (at model resolution) is above 0.5.
    features = keras.layers.Conv2D(1, 1, name="features")(inputs)
    pooled = keras.layers.GlobalMaxPooling2D()(features)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(pooled)
    classifier = keras.Model(inputs, probability)
    classifier.get_layer("features").set_weights(
        [np.array([0.0, 0.0, 1.0], np.float32).reshape(1, 1, 3, 1), np.zeros(1, np.float32)]
    )
    classifier.get_layer("probability").set_weights(
        [np.full((1, 1), 20.0, np.float32), np.full(1, -10.0, np.float32)]
    )
    # Segmenter: per-pixel sigmoid(20 * FLAIR - 10), i.e. tumor where FLAIR > 0.5.
    segmenter_inputs = keras.Input((segmenter_size, segmenter_size, 3))
    tumor_map = keras.layers.Conv2D(1, 1, activation="sigmoid", name="tumor_map")(segmenter_inputs)
    segmenter = keras.Model(segmenter_inputs, tumor_map)
    segmenter.get_layer("tumor_map").set_weights(
        [np.array([0.0, 20.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.full(1, -10.0, np.float32)]
    )
    classifier.save(models_dir / "classifier.keras")
    segmenter.save(models_dir / "segmenter.keras")
    if ensemble:
        member_inputs = keras.Input((segmenter_size, segmenter_size, 3))
        member_map = keras.layers.Conv2D(1, 1, activation="sigmoid", name="tumor_map")
        member = keras.Model(member_inputs, member_map(member_inputs))
        member_map.set_weights(
            [np.array([0.0, 0.0, 20.0], np.float32).reshape(1, 1, 3, 1), np.full(1, -10.0)]
        )
        member.save(models_dir / "segmenter_post.keras")
    specs = {
        "classifier": _metadata(
            "tiny-classifier",
            "classification",
            "classifier.keras",
            {"threshold": 0.5}
            | ({} if extend_threshold is None else {"extend_threshold": extend_threshold}),
        ),
        "segmenter": _metadata(
            "tiny-segmenter",
            "segmentation",
            "segmenter.keras",
            {"mask_threshold": 0.5, "min_region_px": min_region_px},
            size=segmenter_size,
        ),
    }
    if ensemble:
        specs["segmenter"]["ensemble"] = {
            "members": [
                {
                    "weights": "segmenter_post.keras",
                    "input": {"shape": [segmenter_size, segmenter_size, 3], "scaling": "slice-p99"},
                }
            ]
        }
    for stem, spec in specs.items():
        (models_dir / f"{stem}.json").write_text(json.dumps(spec), encoding="utf-8")
    return models_dir


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_models_dir):
    from brainloc.inference import Pipeline

    return Pipeline.load(tiny_models_dir)


@pytest.fixture(scope="session")
def lgg_dir(tmp_path_factory) -> Path:
    """One LGG case restored from ../shared/lgg into a temporary Kaggle-layout directory."""
    if not (SHARED_LGG / "restore.py").is_file():
        pytest.skip(f"the LGG development slices are not at {SHARED_LGG}")
    out = tmp_path_factory.mktemp("lgg")
    subprocess.run(
        [sys.executable, str(SHARED_LGG / "restore.py"), str(out), "--only", LGG_CASE],
        check=True,
        capture_output=True,
    )
    return out / "kaggle_3m" / LGG_CASE


@pytest.fixture(scope="session")
def shipped_pipeline():
    """The pipeline over the shipped models (or ``BRAINLOC_MODELS_DIR`` when set)."""
    from brainloc.model_meta import DEFAULT_MODELS_DIR, models_available

    models_dir = Path(os.environ.get("BRAINLOC_MODELS_DIR") or DEFAULT_MODELS_DIR)
    if not models_available(models_dir):
        pytest.skip(f"the trained models are not in {models_dir} yet (classifier.*, segmenter.*)")
    from brainloc.inference import get_pipeline

    return get_pipeline(models_dir)
