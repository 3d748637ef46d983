"""The one definition of what the models see.

Training (``training/``) and inference (``brainloc.inference``) both call
:func:`prepare_images` and :func:`prepare_masks`, so a model can never be fed
differently from how it was trained. The parameters (input size, scaling) come
from the model's metadata file (``models/<name>.json``), never from constants
scattered through the code.

Channel order everywhere is the Kaggle LGG order: 0 = pre-contrast,
1 = FLAIR, 2 = post-contrast.
"""

from __future__ import annotations

import numpy as np

CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
#: The only scaling scheme the shipped models use: uint8 intensities divided by 255.
SCALING_UINT8_UNIT = "uint8/255"


def _check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images shaped (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images


def scale_images(images: np.ndarray, scaling: str = SCALING_UINT8_UNIT) -> np.ndarray:
    """Scale uint8 images to the model's range.

    Args:
        images: uint8 array (N, H, W, 3) or (H, W, 3), values 0..255.
        scaling: the scheme named in the model metadata.

    Returns:
        float32 array of the same shape with values in [0, 1].
    """
    if scaling != SCALING_UINT8_UNIT:
        raise ValueError(f"unknown scaling scheme {scaling!r}")
    return images.astype(np.float32) / 255.0


def prepare_images(
    images: np.ndarray, input_size: int, scaling: str = SCALING_UINT8_UNIT
) -> np.ndarray:
    """Turn uint8 slices into a model batch.

    Args:
        images: uint8 array (N, H, W, 3) or a single (H, W, 3) slice, channels
            pre-contrast, FLAIR, post-contrast. Any H and W.
        input_size: the square side the model takes (metadata ``input.shape[0]``).
        scaling: the metadata's ``input.scaling``.

    Returns:
        float32 array (N, input_size, input_size, 3) in [0, 1]. Images that are
        not already input_size square are resized bilinearly (antialiased when
        shrinking) so that every caller resizes the same way.
    """
    import tensorflow as tf  # imported here so that reading CHANNELS does not load TensorFlow

    images = _check_images(np.asarray(images))
    batch = scale_images(images, scaling)
    if batch.shape[1:3] != (input_size, input_size):
        batch = tf.image.resize(
            batch, (input_size, input_size), method="bilinear", antialias=True
        ).numpy()
    return batch.astype(np.float32)


def prepare_masks(masks: np.ndarray, input_size: int) -> np.ndarray:
    """Turn ground-truth masks into training targets.

    Args:
        masks: array (N, H, W) or (N, H, W, 1); nonzero means tumor.

    Returns:
        float32 array (N, input_size, input_size, 1) of 0.0 / 1.0.
    """
    import tensorflow as tf

    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[..., np.newaxis]
    if masks.ndim != 4 or masks.shape[-1] != 1:
        raise ValueError(f"expected masks shaped (N, H, W), got {masks.shape}")
    target = (masks > 0).astype(np.float32)
    if target.shape[1:3] != (input_size, input_size):
        target = tf.image.resize(target, (input_size, input_size), method="bilinear").numpy()
        target = (target >= 0.5).astype(np.float32)
    return target


def probability_map_to_mask(
    probability: np.ndarray, output_shape: tuple[int, int], threshold: float
) -> np.ndarray:
    """Map a segmenter output back to the input's size and threshold it.

    Args:
        probability: float array (h, w) or (h, w, 1), values in [0, 1].
        output_shape: (H, W) of the original image.
        threshold: the metadata's ``decision.mask_threshold``.

    Returns:
        bool array (H, W).
    """
    import tensorflow as tf

    probability = np.asarray(probability, dtype=np.float32)
    if probability.ndim == 2:
        probability = probability[..., np.newaxis]
    if probability.shape[:2] != tuple(output_shape):
        probability = tf.image.resize(probability, output_shape, method="bilinear").numpy()
    return probability[..., 0] >= threshold
