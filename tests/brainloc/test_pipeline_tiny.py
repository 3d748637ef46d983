"""The pipeline's logic with tiny models whose answers are known (see conftest.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from brainloc.inference import ModelsNotFoundError, Pipeline, get_pipeline
from tests.brainloc.scan_factory import synthetic_slice, tumor_like_slice


def _square_mask(shape, top, left, side):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_clean_slice_is_negative_with_empty_mask(tiny_pipeline):
    result = tiny_pipeline.analyze(synthetic_slice())
    assert not result.has_tumor
    assert result.tumor_probability < 0.5
    assert result.mask.shape == (256, 256) and result.mask.dtype == bool
    assert not result.mask.any()
    assert result.tumor_area_px == 0 and result.findings.regions == 0
    assert result.model_versions == {
        "classifier": "tiny-classifier v0.0.1",
        "segmenter": "tiny-segmenter v0.0.1",
    }
    assert result.threshold == 0.5


@pytest.mark.parametrize("size", [(256, 256), (300, 200), (512, 512)])
def test_tumor_slice_is_positive_with_mask_at_input_size(tiny_pipeline, size):
    scale = min(size) / 256
    top, left, side = int(96 * scale), int(40 * scale), int(48 * scale)
    image = tumor_like_slice(size, square=(top, left, side))
    result = tiny_pipeline.analyze(image, spacing_mm=(0.5, 0.5), name="t.png")
    assert result.has_tumor and result.tumor_probability > 0.9
    assert result.mask.shape == size
    assert _iou(result.mask, _square_mask(size, top, left, side)) > 0.7
    assert result.findings.side == "left"
    assert result.findings.area_mm2 == pytest.approx(result.tumor_area_px * 0.25)
    assert result.to_dict()["name"] == "t.png"


def test_negative_slices_are_not_segmented(tiny_pipeline):
    # Bright FLAIR (the segmenter would mark it) but dark post-contrast (classifier says no).
    image = tumor_like_slice(post_bright=False)
    assert tiny_pipeline.segment(image[np.newaxis])[0].any()
    result = tiny_pipeline.analyze(image)
    assert not result.has_tumor
    assert not result.mask.any()


def test_case_in_batches_with_findings_and_progress(tiny_pipeline):
    images = np.stack(
        [tumor_like_slice(seed=k) if k in (1, 2, 4) else synthetic_slice(seed=k) for k in range(6)]
    )
    seen = []
    case = tiny_pipeline.analyze_case(
        images, batch_size=4, spacing_mm=(1.0, 1.0), slice_thickness_mm=2.0, progress=seen.append
    )
    assert [r.has_tumor for r in case.slices] == [False, True, True, False, True, False]
    assert case.findings.tumor_slices == (1, 2, 4)
    assert case.findings.volume_ml == pytest.approx(case.masks.sum() * 2.0 / 1000)
    assert case.masks.shape == (6, 256, 256)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    single = [tiny_pipeline.analyze(image) for image in images]
    np.testing.assert_allclose(case.probabilities, [r.tumor_probability for r in single], atol=1e-5)


def test_case_of_slices_with_different_sizes(tiny_pipeline):
    images = [tumor_like_slice((256, 256)), synthetic_slice((128, 160))]
    case = tiny_pipeline.analyze_case(images, batch_size=2)
    assert [r.mask.shape for r in case.slices] == [(256, 256), (128, 160)]
    assert [r.has_tumor for r in case.slices] == [True, False]


def test_bad_arguments(tiny_pipeline):
    with pytest.raises(ValueError, match="uint8"):
        tiny_pipeline.analyze(synthetic_slice().astype(np.float32))
    with pytest.raises(ValueError, match="one"):
        tiny_pipeline.analyze(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        tiny_pipeline.analyze_case(synthetic_slice()[None], batch_size=0)
    with pytest.raises(ValueError, match="no slices"):
        tiny_pipeline.analyze_case(np.zeros((0, 32, 32, 3), np.uint8))


def test_concurrent_sessions_get_the_same_answers(tiny_pipeline):
    images = [tumor_like_slice(seed=k) if k % 2 else synthetic_slice(seed=k) for k in range(8)]
    expected = [tiny_pipeline.analyze(image) for image in images]
    results: dict[int, object] = {}
    errors = []

    def work(index):
        try:
            results[index] = tiny_pipeline.analyze(images[index])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, result in enumerate(expected):
        assert results[index].has_tumor == result.has_tumor
        np.testing.assert_array_equal(results[index].mask, result.mask)


def test_loader_is_cached(tiny_models_dir):
    assert get_pipeline(tiny_models_dir) is get_pipeline(tiny_models_dir)


def test_missing_models_say_so(tmp_path):
    with pytest.raises(ModelsNotFoundError, match="not available"):
        Pipeline.load(tmp_path)


def test_gradcam_points_at_the_bright_patch(tiny_pipeline):
    image = tumor_like_slice((256, 256), square=(150, 150, 48))
    heat = tiny_pipeline.gradcam(image)
    assert heat.shape == (256, 256) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert 140 <= row < 210 and 140 <= col < 210


def test_regions_below_the_metadata_minimum_are_dropped(tmp_path, tiny_pipeline):
    from tests.brainloc.conftest import build_tiny_models

    pipeline = Pipeline.load(build_tiny_models(tmp_path / "models", min_region_px=1500))
    image = tumor_like_slice(square=(100, 40, 48))  # 2,304 pixels: kept
    image[30:62, 150:182, 1] = 240  # 1,024 pixels of bright FLAIR: dropped
    assert tiny_pipeline.analyze(image).findings.regions == 2  # no minimum: both regions
    result = pipeline.analyze(image)
    assert result.findings.regions == 1
    assert _iou(result.mask, _square_mask((256, 256), 100, 40, 48)) > 0.7


def test_models_with_different_input_sizes(tmp_path):
    """The segmenter gets its own preprocessing when its input differs from the classifier's."""
    from tests.brainloc.conftest import build_tiny_models

    pipeline = Pipeline.load(build_tiny_models(tmp_path / "models", segmenter_size=64))
    assert pipeline.segmenter_spec.input_size == 64
    square = (100, 60, 48)  # tumor_like_slice's default bright square
    images = [tumor_like_slice(seed=1), synthetic_slice(seed=2), tumor_like_slice(seed=3)]
    case = pipeline.analyze_case(images, batch_size=2)
    assert [r.has_tumor for r in case.slices] == [True, False, True]
    assert not case.slices[1].mask.any()
    for index in (0, 2):
        assert _iou(case.slices[index].mask, _square_mask((256, 256), *square)) > 0.8


def test_an_ensemble_averages_its_members_maps_each_on_its_own_scaling(tmp_path):
    """Two segmenters: FLAIR > 0.5 (uint8/255) and post-contrast > 0.5 (slice-p99)."""
    import keras

    from brainloc.model_card import card_for
    from brainloc.preprocessing import prepare_images
    from tests.brainloc.conftest import TINY_SIZE, build_tiny_models

    single = Pipeline.load(build_tiny_models(tmp_path / "single"))
    pipeline = Pipeline.load(build_tiny_models(tmp_path / "ensemble", ensemble=True))
    assert [m.scaling for m in pipeline.segmenter_spec.members] == ["uint8/255", "slice-p99"]
    assert len(pipeline.segmenters) == 2
    description = card_for(tmp_path / "ensemble", "segmenter").input_description
    assert description.endswith(
        "scaling uint8/255; ensemble member segmenter_post.keras: scaling slice-p99 "
        "(the mean of 2 probability maps is thresholded)"
    )
    # Bright post-contrast everywhere in a band, bright FLAIR in a square that half overlaps it.
    image = synthetic_slice((TINY_SIZE, TINY_SIZE), seed=4)
    image[4:20, 4:20, 1] = 250
    image[12:28, :, 2] = 250
    members = [
        keras.models.load_model(tmp_path / "ensemble" / name, compile=False)
        for name in ("segmenter.keras", "segmenter_post.keras")
    ]
    maps = [
        model.predict(prepare_images(image, TINY_SIZE, scaling), verbose=0)[0, ..., 0]
        for model, scaling in zip(members, ("uint8/255", "slice-p99"), strict=True)
    ]
    expected = (maps[0] + maps[1]) / 2 >= 0.5
    got = pipeline.segment(image)[0]
    np.testing.assert_array_equal(got, expected)
    # Where only one member is sure, the mean sits near 0.5: the ensemble's mask is not
    # either member's alone.
    assert not np.array_equal(got, single.segment(image)[0])
    assert not np.array_equal(got, maps[1] >= 0.5)
    # analyze_case reuses the classifier's prepared input for the uint8/255 member only.
    case = pipeline.analyze_case([image, image], volume=True)
    for result in case.slices:
        assert result.has_tumor
        np.testing.assert_array_equal(result.mask, expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": [16, 16, 3]}, "could not be averaged"),
        ({"scaling": "z-score"}, "is not one of"),
    ],
)
def test_a_malformed_ensemble_member_is_refused(tmp_path, change, message):
    import json

    from brainloc.model_meta import SEGMENTER_NAME, load_spec, models_available
    from tests.brainloc.conftest import build_tiny_models

    models = build_tiny_models(tmp_path / "models", ensemble=True)
    meta_path = models / "segmenter.json"
    meta = json.loads(meta_path.read_text())
    meta["ensemble"]["members"][0]["input"].update(change)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message):
        load_spec(models, SEGMENTER_NAME)
    # Present but malformed: the loader's message is shown, not "not installed".
    assert models_available(models)


def test_an_ensemble_is_incomplete_without_every_weights_file(tmp_path):
    import json

    from brainloc.model_meta import CLASSIFIER_NAME, load_spec, models_available
    from tests.brainloc.conftest import build_tiny_models

    models = build_tiny_models(tmp_path / "models", ensemble=True)
    assert models_available(models)
    (models / "segmenter_post.keras").unlink()
    assert not models_available(models)
    with pytest.raises(ModelsNotFoundError, match="segmenter_post.keras"):
        Pipeline.load(models)
    # Only a segmenter may be an ensemble.
    meta_path = models / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["ensemble"] = {"members": [{"weights": "classifier.keras", "input": meta["input"]}]}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="only a segmentation model"):
        load_spec(models, CLASSIFIER_NAME)


def _leaning_segmenter(models_dir, tta: str | None):
    """Replace the tiny segmenter by one that leans right, so its mirror's answer differs:
    sigmoid(8 * FLAIR(x - 1) + 4 * FLAIR(x) - 10) along each row, and set the segmenter
    metadata's ``test_time_augmentation`` to ``tta``."""
    import json

    import keras

    inputs = keras.Input((None, None, 3))
    layer = keras.layers.Conv2D(1, (1, 3), padding="same", activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    kernel = np.zeros((1, 3, 3, 1), np.float32)
    kernel[0, 0, 1, 0], kernel[0, 1, 1, 0] = 8.0, 4.0  # FLAIR of the left neighbour, itself
    layer.set_weights([kernel, np.full(1, -10.0, np.float32)])
    model.save(models_dir / "segmenter.keras")
    meta_path = models_dir / "segmenter.json"
    meta = json.loads(meta_path.read_text())
    meta["decision"]["test_time_augmentation"] = tta
    meta_path.write_text(json.dumps(meta))
    return models_dir


def test_the_segmenter_metadata_can_ask_for_the_mirrored_map_averaged(tmp_path):
    from brainloc.model_card import card_for
    from tests.brainloc.conftest import TINY_SIZE, build_tiny_models

    image = synthetic_slice((TINY_SIZE, TINY_SIZE), seed=5)
    image[..., 1] = 0
    image[8:20, 8:20, 1] = 255  # FLAIR: a square, columns 8 to 19
    plain = Pipeline.load(_leaning_segmenter(build_tiny_models(tmp_path / "plain"), None))
    mirrored = Pipeline.load(
        _leaning_segmenter(build_tiny_models(tmp_path / "flip"), "horizontal_flip")
    )
    # Alone the map leans right: column 8 (no bright left neighbour) is out (P 0.002) and
    # column 19 in (P 0.88). With its mirror's map the two edges are alike (P 0.44): both out.
    leaning = np.zeros(image.shape[:2], bool)
    leaning[8:20, 9:20] = True
    np.testing.assert_array_equal(plain.segment(image)[0], leaning)
    both_ways = np.zeros(image.shape[:2], bool)
    both_ways[8:20, 9:19] = True
    np.testing.assert_array_equal(mirrored.segment(image)[0], both_ways)
    assert card_for(tmp_path / "flip", "segmenter").decision_text == (
        "A pixel is tumor when its probability (each map the mean over the slice and its "
        "left-right mirror) is ≥ 0.50; no region is dropped."
    )


def test_an_unknown_segmenter_test_time_augmentation_is_refused(tmp_path):
    from tests.brainloc.conftest import build_tiny_models

    models = _leaning_segmenter(build_tiny_models(tmp_path / "models"), "rotate")
    with pytest.raises(ValueError, match="unknown test_time_augmentation 'rotate' in segmenter"):
        Pipeline.load(models)
