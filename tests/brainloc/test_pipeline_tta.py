"""Test-time augmentation named in the classifier metadata (left-right flip averaging)."""

import json

import keras
import numpy as np
import pytest

from brainloc.inference import Pipeline

from .conftest import TINY_SIZE, build_tiny_models


def _with_position_sensitive_classifier(models_dir, tta):
    """Replace the tiny classifier by one whose output depends on where the signal is."""
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(flat)
    model = keras.Model(inputs, outputs)
    weights = np.zeros((TINY_SIZE, TINY_SIZE, 3), np.float32)
    weights[:, : TINY_SIZE // 2, 1] = 0.05  # only the left half of FLAIR counts
    model.get_layer("probability").set_weights([weights.reshape(-1, 1), np.full(1, -2.0)])
    model.save(models_dir / "classifier.keras")
    meta_path = models_dir / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["decision"].pop("test_time_augmentation", None)
    if tta:
        meta["decision"]["test_time_augmentation"] = tta
    meta_path.write_text(json.dumps(meta))


def test_flip_average_is_the_mean_of_the_slice_and_its_mirror(tmp_path):
    models_dir = build_tiny_models(tmp_path / "m")
    image = np.zeros((TINY_SIZE, TINY_SIZE, 3), np.uint8)
    image[8:16, 2:10, 1] = 255  # bright FLAIR on the left
    _with_position_sensitive_classifier(models_dir, None)
    plain = Pipeline.load(models_dir)
    left = plain.classify(image[np.newaxis])[0]
    right = plain.classify(image[np.newaxis, :, ::-1])[0]
    assert left > right + 0.1  # the model does see the side
    _with_position_sensitive_classifier(models_dir, "horizontal_flip")
    averaged = Pipeline.load(models_dir).classify(image[np.newaxis])[0]
    assert averaged == pytest.approx((left + right) / 2, abs=1e-5)


def test_unknown_augmentation_in_metadata_is_refused(tmp_path):
    models_dir = build_tiny_models(tmp_path / "m")
    _with_position_sensitive_classifier(models_dir, "rotate_90")
    with pytest.raises(ValueError, match="test_time_augmentation"):
        Pipeline.load(models_dir)
