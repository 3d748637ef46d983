"""The scaling schemes of the shared preprocessing, and the metadata check that names them."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainloc.model_meta import CLASSIFIER_NAME, DEFAULT_MODELS_DIR, load_spec
from brainloc.preprocessing import (
    SCALING_SLICE_P99,
    SCALING_UINT8_UNIT,
    prepare_images,
    resize_unit,
    scale_images,
)


def _phantom(brightness: float) -> np.ndarray:
    """A round 'head' with a brighter 'lesion', at a given overall brightness."""
    yy, xx = np.mgrid[:128, :128]
    head = (yy - 64) ** 2 + (xx - 64) ** 2 < 50**2
    lesion = (yy - 50) ** 2 + (xx - 70) ** 2 < 10**2
    rng = np.random.default_rng(0)
    image = np.where(head, 0.4 + 0.05 * rng.standard_normal((128, 128)), 0.0)
    image = np.where(lesion, 0.8, image)
    return (
        (np.clip(image * brightness, 0, 1) * 255).round().astype(np.uint8)[..., None].repeat(3, -1)
    )


def test_unit_scaling_is_the_resize_divided_by_255():
    image = _phantom(1.0)
    np.testing.assert_array_equal(prepare_images(image, 128), image[None] / np.float32(255.0))
    small = prepare_images(image, 64, SCALING_UINT8_UNIT)
    np.testing.assert_array_equal(small, resize_unit(image, 64))


def test_percentile_scaling_removes_overall_brightness():
    dim, bright = _phantom(0.6), _phantom(1.2)
    raw_gap = np.abs(prepare_images(dim, 128) - prepare_images(bright, 128)).mean()
    scaled_dim = prepare_images(dim, 128, SCALING_SLICE_P99)
    scaled_bright = prepare_images(bright, 128, SCALING_SLICE_P99)
    scaled_gap = np.abs(scaled_dim - scaled_bright).mean()
    assert scaled_gap < raw_gap / 5
    # The 99th percentile of the signal maps to 1; background stays 0; clipped at 1.5.
    signal = scaled_bright[0, ..., 1][bright[..., 1] > 5]
    assert np.percentile(signal, 99) == pytest.approx(1.0, abs=0.02)
    assert scaled_bright[0, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert scaled_bright.max() <= 1.5


def test_percentile_scaling_leaves_an_empty_slice_black():
    empty = np.zeros((1, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(scale_images(empty, SCALING_SLICE_P99), empty)


def test_unknown_scaling_is_refused_at_use_and_in_metadata(tmp_path):
    with pytest.raises(ValueError, match="unknown scaling"):
        scale_images(np.zeros((1, 8, 8, 3), np.float32), "z-score")
    models = Path(tmp_path)
    for path in Path(DEFAULT_MODELS_DIR).glob(f"{CLASSIFIER_NAME}.*"):
        shutil.copy(path, models / path.name)
    meta_path = models / f"{CLASSIFIER_NAME}.json"
    meta = json.loads(meta_path.read_text())
    meta["input"]["scaling"] = "z-score"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="input.scaling 'z-score' is not one of"):
        load_spec(models, CLASSIFIER_NAME)


def test_metadata_with_another_channel_order_is_refused(tmp_path):
    # Inference feeds pre-contrast, FLAIR, post-contrast; a model that says it was trained on
    # another order is refused rather than given FLAIR where it expects a T1.
    models = Path(tmp_path)
    for path in Path(DEFAULT_MODELS_DIR).glob(f"{CLASSIFIER_NAME}.*"):
        shutil.copy(path, models / path.name)
    meta_path = models / f"{CLASSIFIER_NAME}.json"
    meta = json.loads(meta_path.read_text())
    assert load_spec(models, CLASSIFIER_NAME).channels == tuple(meta["input"]["channels"])
    meta["input"]["channels"] = list(reversed(meta["input"]["channels"]))
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="input.channels must be"):
        load_spec(models, CLASSIFIER_NAME)
