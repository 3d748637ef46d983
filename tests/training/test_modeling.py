"""Model builders and the focal Tversky loss against hand-computed values."""

import numpy as np
import pytest

from brainloc.modeling import (
    FocalTverskyLoss,
    build_encoder_classifier,
    build_resnet_classifier,
    build_resunet,
    focal_tversky_loss,
    tversky_index,
)


def test_tversky_index_matches_hand_computation():
    truth = np.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    prediction = np.array([0.8, 0.4, 0.2, 0.0]).reshape(1, 2, 2, 1)
    # TP = 0.8 + 0.4 = 1.2; FN = 0.2 + 0.6 = 0.8; FP = 0.2; smooth = 1.
    expected = (1.2 + 1) / (1.2 + 0.7 * 0.8 + 0.3 * 0.2 + 1)
    assert float(tversky_index(truth, prediction)) == pytest.approx(expected, rel=1e-6)
    assert float(focal_tversky_loss(truth, prediction)) == pytest.approx(
        (1 - expected) ** 0.75, rel=1e-6
    )


def test_alpha_weights_false_negatives_more_than_false_positives():
    truth = np.array([1.0, 0.0]).reshape(1, 1, 2, 1)
    missed = np.array([0.0, 0.0]).reshape(1, 1, 2, 1)  # one false negative
    extra = np.array([1.0, 1.0]).reshape(1, 1, 2, 1)  # one false positive
    assert float(focal_tversky_loss(truth, missed, smooth=0.0)) == pytest.approx(1.0)
    assert float(focal_tversky_loss(truth, missed, smooth=1e-6)) > float(
        focal_tversky_loss(truth, extra, smooth=1e-6)
    )


def test_perfect_prediction_has_zero_loss_and_wrapper_agrees():
    truth = np.zeros((2, 4, 4, 1), np.float32)
    truth[0, 1:3, 1:3] = 1
    assert float(focal_tversky_loss(truth, truth)) == pytest.approx(0.0, abs=1e-6)
    noisy = np.clip(truth + 0.3, 0, 1)
    assert float(FocalTverskyLoss()(truth, noisy)) == pytest.approx(
        float(focal_tversky_loss(truth, noisy)), rel=1e-6
    )


def test_classifier_shape_and_range():
    model = build_resnet_classifier(64, stage_filters=(8, 16), blocks_per_stage=1)
    out = model(np.random.rand(2, 64, 64, 3).astype(np.float32), training=False)
    assert tuple(out.shape) == (2, 1)
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))
    assert model.get_layer("gradcam_target").output.shape[1:3] == (
        8,
        8,
    )  # 64 / (stem 2 * pool 2 * one stride-2 stage)


def test_resunet_shape_and_skip_connections():
    model = build_resunet(32, level_filters=(4, 8), bottleneck_filters=16)
    out = model(np.random.rand(3, 32, 32, 3).astype(np.float32), training=False)
    assert tuple(out.shape) == (3, 32, 32, 1)
    assert any("concat" in layer.name for layer in model.layers)


@pytest.mark.parametrize("size", [100, 250])
def test_builders_reject_sizes_they_cannot_halve(size):
    with pytest.raises(ValueError, match="input_size"):
        build_resunet(size)
    with pytest.raises(ValueError, match="input_size"):
        build_resnet_classifier(size)


def test_encoder_classifier_copies_the_encoder_and_stays_independent():
    segmenter = build_resunet(32, level_filters=(4, 8), bottleneck_filters=16)
    classifier = build_encoder_classifier(segmenter)
    kernel = segmenter.get_layer("enc2_conv1").get_weights()[0]
    np.testing.assert_array_equal(classifier.get_layer("enc2_conv1").get_weights()[0], kernel)
    # Fine-tuning the classifier must not move the segmenter's weights.
    classifier.get_layer("enc2_conv1").set_weights([np.zeros_like(kernel)])
    np.testing.assert_array_equal(segmenter.get_layer("enc2_conv1").get_weights()[0], kernel)
    out = classifier(np.random.rand(2, 32, 32, 3).astype(np.float32), training=False)
    assert tuple(out.shape) == (2, 1)
    # The decoder is not part of the classifier.
    assert not any(layer.name.startswith("dec") for layer in classifier.layers)
    assert classifier.get_layer("gradcam_target").output.shape[1:3] == (8, 8)
