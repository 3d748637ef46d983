"""Augmentation fit for MRI slices, on numpy batches, for any Keras backend.

Geometry (left-right flip, rotation up to ±15°, zoom ±10 %) is one affine
transform per slice, applied to the image and its mask together by stacking
the mask as a fourth channel, so they can never drift apart. Intensity jitter
(per-channel gain, offset and gamma, optionally noise; :data:`STANDARD` or the
wider :data:`STRONG`) touches the image only and keeps the background black.
Left-right flips are safe because the label does not depend on side.

The warp runs through ``keras.ops.image.affine_transform``, so the same code
augments on TensorFlow (this CPU) and on JAX or PyTorch (a GPU training machine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainloc.preprocessing import SIGNAL_FLOOR

MAX_ROTATION_DEGREES = 15.0
MAX_ZOOM = 0.10


@dataclass(frozen=True)
class IntensityJitter:
    """Ranges of the per-slice, per-channel intensity changes (uniformly drawn)."""

    gain: tuple[float, float]
    offset: tuple[float, float]
    gamma: tuple[float, float]
    #: Gaussian noise on signal pixels, its standard deviation drawn from 0 to this per slice.
    noise_sd: float = 0.0


#: What every shipped model trained with.
STANDARD = IntensityJitter(gain=(0.9, 1.1), offset=(-0.05, 0.05), gamma=(0.8, 1.25))
#: A wider profile, for scanners whose contrast differs more than the training patients'.
STRONG = IntensityJitter(gain=(0.75, 1.33), offset=(-0.1, 0.1), gamma=(0.6, 1.6), noise_sd=0.03)
JITTER_PROFILES = {"standard": STANDARD, "strong": STRONG}


def random_affine(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random transforms in Keras' 8-number form (output pixel -> input pixel).

    Each one flips left-right with probability 1/2, rotates by a uniform angle in
    ±MAX_ROTATION_DEGREES and zooms by a uniform factor in 1 ± MAX_ZOOM, all about
    the image centre.
    """
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, count))
    zoom = rng.uniform(1.0 - MAX_ZOOM, 1.0 + MAX_ZOOM, count)
    flip = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    centre = (size - 1) / 2.0
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    # input = R(angle) / zoom @ (F @ (output - centre)) + centre, with F flipping x.
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = centre - a0 * centre - a1 * centre
    b2 = centre - b0 * centre - b1 * centre
    zeros = np.zeros(count)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def warp(batch: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Apply per-slice affine transforms (bilinear, zeros outside) to (N, S, S, C)."""
    from keras import ops

    warped = ops.image.affine_transform(
        batch, transforms, interpolation="bilinear", fill_mode="constant", fill_value=0.0
    )
    return ops.convert_to_numpy(warped).astype(np.float32)


def jitter_intensity(
    batch: np.ndarray, rng: np.random.Generator, jitter: IntensityJitter = STANDARD
) -> np.ndarray:
    """Per-slice, per-channel gain, offset and gamma (and noise, if ``jitter`` has any) on
    signal pixels (above the shared preprocessing's SIGNAL_FLOOR); background stays black;
    clipped at 0."""
    count, channels = len(batch), batch.shape[-1]
    gain = rng.uniform(*jitter.gain, (count, 1, 1, channels))
    offset = rng.uniform(*jitter.offset, (count, 1, 1, channels))
    gamma = rng.uniform(*jitter.gamma, (count, 1, 1, channels))
    signal = batch > SIGNAL_FLOOR
    jittered = np.power(np.maximum(batch, 0.0), gamma) * gain + offset
    if jitter.noise_sd:
        sd = rng.uniform(0.0, jitter.noise_sd, (count, 1, 1, 1))
        jittered = jittered + sd * rng.standard_normal(batch.shape)
    upper = max(1.0, float(batch.max()))
    return np.where(signal, np.clip(jittered, 0.0, upper), batch).astype(np.float32)


def augment_pair(
    images: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    jitter: IntensityJitter = STANDARD,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment (N, S, S, 3) images and (N, S, S, 1) 0/1 masks together."""
    transforms = random_affine(len(images), images.shape[1], rng)
    stacked = warp(np.concatenate([images, masks], axis=-1), transforms)
    images = jitter_intensity(stacked[..., :3], rng, jitter)
    return images, (stacked[..., 3:] >= 0.5).astype(np.float32)


def augment_images(
    images: np.ndarray, rng: np.random.Generator, jitter: IntensityJitter = STANDARD
) -> np.ndarray:
    """Augment (N, S, S, 3) classifier inputs; labels do not change."""
    transforms = random_affine(len(images), images.shape[1], rng)
    return jitter_intensity(warp(images, transforms), rng, jitter)
