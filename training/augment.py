"""Augmentation fit for MRI slices, as tf.data map functions.

Geometry (flip, small rotation, small scale) is applied to the image and its
mask together, by stacking the mask as a fourth channel, so they can never
drift apart. Intensity jitter (per-channel gain and offset) touches the image
only. Left-right flips are safe because the label does not depend on side.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_geometry = keras.Sequential(
    [
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(0.04, fill_mode="constant", fill_value=0.0),  # about ±15°
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", fill_value=0.0),
    ],
    name="geometry",
)


def jitter_intensity(image: tf.Tensor) -> tf.Tensor:
    """Per-channel gain in [0.9, 1.1] and offset in [-0.05, 0.05], clipped to [0, 1]."""
    gain = tf.random.uniform((1, 1, 3), 0.9, 1.1)
    offset = tf.random.uniform((1, 1, 3), -0.05, 0.05)
    # Keep the background black: only shift pixels that carry signal.
    signal = tf.cast(image > 0.02, image.dtype)
    return tf.clip_by_value(image * gain + offset * signal, 0.0, 1.0)


def augment_pair(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment a batch of (B, S, S, 3) images and (B, S, S, 1) masks together."""
    stacked = _geometry(tf.concat([image, mask], axis=-1), training=True)
    image, mask = stacked[..., :3], stacked[..., 3:]
    return jitter_intensity(image), tf.cast(mask >= 0.5, tf.float32)


def augment_image(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment a batch of classifier inputs; the label is unchanged."""
    return jitter_intensity(_geometry(image, training=True)), label
