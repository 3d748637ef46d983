"""Model builders and the focal Tversky loss.

Both networks are Keras functional models built by plain functions, so that
training, tests and the benchmark build exactly the same graphs:

- :func:`build_encoder_classifier`: the shipped classifier, a residual network
  made of a trained ResUNet's encoder plus a pooling head, mapping a slice to P(tumor).
- :func:`build_resnet_classifier`: a compact ResNet (pre-activation residual
  blocks, Kaiming He et al. 2016) trained from scratch; kept as the baseline it lost to.
- :func:`build_resunet`: a ResUNet (residual encoder, bottleneck, decoder with
  skip connections; Zhang et al. 2018) that maps a slice to a per-pixel tumor
  probability.
- :func:`focal_tversky_loss`: Abraham & Khan, ISBI 2019.
"""

from __future__ import annotations

import keras
from keras import layers, ops


def _residual_block(x, filters: int, strides: int = 1, name: str = "block"):
    """Pre-activation residual block: BN-ReLU-Conv3x3 twice, 1x1 projection on a shape change."""
    shortcut = x
    y = layers.BatchNormalization(name=f"{name}_bn1")(x)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(
            y
        )
    y = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1"
    )(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_resnet_classifier(
    input_size: int = 256,
    stage_filters: tuple[int, ...] = (24, 48, 96, 192),
    blocks_per_stage: int = 1,
    dropout_rate: float = 0.3,
) -> keras.Model:
    """A compact ResNet that outputs P(tumor) for one slice.

    Args:
        input_size: square side of the input, (input_size, input_size, 3) float32 in [0, 1].
        stage_filters: filters of each residual stage; every stage after the first halves
            the resolution.
        blocks_per_stage: residual blocks per stage.
        dropout_rate: dropout before the final dense layer.

    Returns:
        A model mapping (N, S, S, 3) float32 to (N, 1) sigmoid probabilities. The last
        residual block's output (``gradcam_target``) is the layer Grad-CAM reads.
    """
    if input_size % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
    inputs = keras.Input((input_size, input_size, 3), name="slice")
    # The stride-2 stem followed by pooling brings 256 px down to 64 px early, which is
    # what makes a full-resolution input affordable on a CPU.
    x = layers.Conv2D(
        stage_filters[0], 5, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, filters in enumerate(stage_filters):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, filters, strides, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Activation("relu", name="gradcam_target")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor_probability")(x)
    return keras.Model(inputs, outputs, name="resnet_classifier")


def build_encoder_classifier(segmenter: keras.Model, dropout_rate: float = 0.3) -> keras.Model:
    """A ResNet classifier whose residual encoder starts from a trained ResUNet's encoder.

    ImageNet weights cannot be downloaded here, and a ResNet trained from scratch on
    about 2,200 slices learns slowly (our from-scratch run reached 0.70 validation
    accuracy after 14 epochs). The segmenter's encoder has been trained with pixel
    labels, so its features already separate tumor from brain; the classifier
    copies that encoder (stem, residual levels and bottleneck: a residual network)
    and adds a pooling head. The copy is independent: fine-tuning it does not
    change the segmenter.

    Args:
        segmenter: a model from :func:`build_resunet` (trained or not).
        dropout_rate: dropout before the final dense layer.

    Returns:
        A model mapping (N, S, S, 3) float32 in [0, 1] (S = the segmenter's input
        size) to (N, 1) sigmoid probabilities; Grad-CAM reads ``gradcam_target``.
    """
    copy = keras.models.clone_model(segmenter)
    copy.set_weights(segmenter.get_weights())
    features = copy.get_layer("bottleneck_add").output
    x = layers.BatchNormalization(name="head_bn")(features)
    x = layers.Activation("relu", name="gradcam_target")(x)
    average = layers.GlobalAveragePooling2D(name="head_avg_pool")(x)
    # Max pooling keeps a small lesion's signal that averaging over the slice would dilute.
    strongest = layers.GlobalMaxPooling2D(name="head_max_pool")(x)
    x = layers.Concatenate(name="head_pool")([average, strongest])
    x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor_probability")(x)
    return keras.Model(copy.input, outputs, name="resnet_classifier")


def build_resunet(
    input_size: int = 128,
    level_filters: tuple[int, ...] = (16, 32, 64, 128),
    bottleneck_filters: int = 256,
) -> keras.Model:
    """A ResUNet that outputs a per-pixel tumor probability.

    Args:
        input_size: square side of the input, (input_size, input_size, 3) float32 in [0, 1].
            Must be divisible by 2 ** len(level_filters).
        level_filters: filters of the encoder levels (the decoder mirrors them).
        bottleneck_filters: filters of the bottleneck residual block.

    Returns:
        A model mapping (N, S, S, 3) float32 to (N, S, S, 1) sigmoid probabilities.
    """
    if input_size % (2 ** len(level_filters)):
        raise ValueError(f"input_size {input_size} must be divisible by {2 ** len(level_filters)}")
    inputs = keras.Input((input_size, input_size, 3), name="slice")
    x = layers.Conv2D(level_filters[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    skips = []
    for level, filters in enumerate(level_filters):
        x = _residual_block(x, filters, name=f"enc{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = _residual_block(x, bottleneck_filters, name="bottleneck")
    for level in reversed(range(len(level_filters))):
        filters = level_filters[level]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level + 1}_up")(x)
        x = layers.Concatenate(name=f"dec{level + 1}_concat")([x, skips[level]])
        x = _residual_block(x, filters, name=f"dec{level + 1}")
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Activation("relu", name="head_relu")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="tumor_map")(x)
    return keras.Model(inputs, outputs, name="resunet")


def tversky_index(y_true, y_pred, alpha: float = 0.7, smooth: float = 1.0):
    """Tversky index over the whole batch.

    ``alpha`` weights false negatives and ``1 - alpha`` false positives, so
    alpha > 0.5 favours recall, which matters for small lesions.
    """
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    true_pos = ops.sum(y_true * y_pred)
    false_neg = ops.sum(y_true * (1.0 - y_pred))
    false_pos = ops.sum((1.0 - y_true) * y_pred)
    return (true_pos + smooth) / (true_pos + alpha * false_neg + (1.0 - alpha) * false_pos + smooth)


def focal_tversky_loss(
    y_true, y_pred, alpha: float = 0.7, gamma: float = 0.75, smooth: float = 1.0
):
    """Focal Tversky loss (Abraham & Khan, ISBI 2019): (1 - TI) ** gamma.

    The paper writes the exponent as 1/gamma with gamma = 4/3; 0.75 is the same value.

    Args:
        y_true: (N, H, W, 1) 0/1 targets.
        y_pred: (N, H, W, 1) probabilities in [0, 1].

    Returns:
        A scalar tensor in [0, 1].
    """
    index = tversky_index(y_true, y_pred, alpha=alpha, smooth=smooth)
    return ops.power(ops.maximum(1.0 - index, 0.0), gamma)


@keras.saving.register_keras_serializable(package="brainloc")
class FocalTverskyLoss(keras.losses.Loss):
    """Keras loss wrapper around :func:`focal_tversky_loss` so it serializes by name."""

    def __init__(self, alpha: float = 0.7, gamma: float = 0.75, smooth: float = 1.0, **kwargs):
        super().__init__(name=kwargs.pop("name", "focal_tversky"), **kwargs)
        self.alpha, self.gamma, self.smooth = alpha, gamma, smooth

    def call(self, y_true, y_pred):
        return focal_tversky_loss(y_true, y_pred, self.alpha, self.gamma, self.smooth)

    def get_config(self):
        return {"alpha": self.alpha, "gamma": self.gamma, "smooth": self.smooth, "name": self.name}


def dice_coefficient(y_true, y_pred, smooth: float = 1.0):
    """Soft Dice over the batch, reported as a training metric."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    intersection = ops.sum(y_true * y_pred)
    return (2.0 * intersection + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)
