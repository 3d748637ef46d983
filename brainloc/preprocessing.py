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
#: Per-slice, per-channel 99th-percentile scaling (see :func:`scale_images`).
SCALING_SLICE_P99 = "slice-p99"
SCALING_SCHEMES = (SCALING_UINT8_UNIT, SCALING_SLICE_P99)
#: Pixels at or below this (after dividing by 255) are background, not signal.
SIGNAL_FLOOR = 0.02
#: Upper clip of percentile-scaled intensities (lesions are brighter than the 99th percentile).
PERCENTILE_CLIP = 1.5


def _check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images shaped (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images


def _percentile_scale(batch: np.ndarray) -> np.ndarray:
    """Divide each slice's channel by the 99th percentile of its signal pixels."""
    scaled = np.empty_like(batch)
    for index, image in enumerate(batch):
        for channel in range(image.shape[-1]):
            plane = image[..., channel]
            signal = plane[plane > SIGNAL_FLOOR]
            reference = float(np.percentile(signal, 99)) if signal.size >= 64 else 1.0
            scaled[index, ..., channel] = plane / max(reference, 0.05)
    return np.clip(scaled, 0.0, PERCENTILE_CLIP)


def scale_images(batch: np.ndarray, scaling: str = SCALING_UINT8_UNIT) -> np.ndarray:
    """Apply the model's intensity scaling to a batch already divided by 255.

    Args:
        batch: float32 array (N, H, W, 3), uint8 intensities divided by 255.
        scaling: the scheme named in the model metadata (``input.scaling``):

            - ``"uint8/255"``: nothing more; the model sees values in [0, 1].
            - ``"slice-p99"``: each channel of each slice is divided by the 99th
              percentile of its signal pixels (above 0.02) and clipped to [0, 1.5],
              so a scanner's or site's overall brightness no longer matters.

    Returns:
        float32 array of the same shape.
    """
    if scaling == SCALING_UINT8_UNIT:
        return batch.astype(np.float32)
    if scaling == SCALING_SLICE_P99:
        return _percentile_scale(batch.astype(np.float32))
    raise ValueError(f"unknown scaling scheme {scaling!r}")


def resize_unit(images: np.ndarray, input_size: int) -> np.ndarray:
    """uint8 slices divided by 255 and resized to ``input_size`` square.

    Resizing is bilinear and antialiased when shrinking, through ``keras.ops``, so
    the same code runs on every Keras backend (TensorFlow here, JAX or PyTorch on
    a GPU training machine).
    """
    images = _check_images(np.asarray(images))
    batch = images.astype(np.float32) / 255.0
    if batch.shape[1:3] != (input_size, input_size):
        from keras import ops  # imported here so that reading CHANNELS does not load Keras

        batch = ops.convert_to_numpy(
            ops.image.resize(
                batch, (input_size, input_size), interpolation="bilinear", antialias=True
            )
        )
    return batch.astype(np.float32)


def prepare_images(
    images: np.ndarray, input_size: int, scaling: str = SCALING_UINT8_UNIT
) -> np.ndarray:
    """Turn uint8 slices into a model batch.

    Args:
        images: uint8 array (N, H, W, 3) or a single (H, W, 3) slice, channels
            pre-contrast, FLAIR, post-contrast. Any H and W.
        input_size: the square side the model takes (metadata ``input.shape[0]``).
        scaling: the metadata's ``input.scaling`` (see :func:`scale_images`).

    Returns:
        float32 array (N, input_size, input_size, 3). Images are first divided by
        255 and resized (:func:`resize_unit`), then scaled, so every caller
        resizes and scales the same way.
    """
    return scale_images(resize_unit(images, input_size), scaling)


def prepare_masks(masks: np.ndarray, input_size: int) -> np.ndarray:
    """Turn ground-truth masks into training targets.

    Args:
        masks: array (N, H, W) or (N, H, W, 1); nonzero means tumor.

    Returns:
        float32 array (N, input_size, input_size, 1) of 0.0 / 1.0.
    """
    from keras import ops

    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[..., np.newaxis]
    if masks.ndim != 4 or masks.shape[-1] != 1:
        raise ValueError(f"expected masks shaped (N, H, W), got {masks.shape}")
    target = (masks > 0).astype(np.float32)
    if target.shape[1:3] != (input_size, input_size):
        target = ops.convert_to_numpy(
            ops.image.resize(target, (input_size, input_size), interpolation="bilinear")
        )
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
    from keras import ops

    probability = np.asarray(probability, dtype=np.float32)
    if probability.ndim == 2:
        probability = probability[..., np.newaxis]
    if probability.shape[:2] != tuple(output_shape):
        probability = ops.convert_to_numpy(
            ops.image.resize(probability, tuple(output_shape), interpolation="bilinear")
        )
    return probability[..., 0] >= threshold
