"""Turning decoded pixel arrays of any format into a :class:`brainloc.scans.Scan`.

Every reader (TIFF, PNG/JPEG, DICOM, NIfTI) decodes to a numeric array shaped
(N, H, W) or (N, H, W, C) and hands it to :func:`build_scan`, which checks the
size, channels and dtype, rescales non-8-bit data, expands single-channel
images to the three model channels and refuses binary masks. One place, so
every format obeys the same rules.
"""

from __future__ import annotations

import numpy as np

from brainloc.scans import (
    ALL_SEQUENCES,
    FLAIR_ONLY,
    MAX_TOTAL_PIXELS,
    MIN_SIDE,
    SINGLE_SEQUENCE_NOTE,
    Scan,
    ScanError,
    SeriesHeader,
)
from brainloc.settings import scan_limits

#: Percentile used as white when rescaling 16-bit or float data; the brightest
#: 0.5 % of an MR volume are mostly vessels and artefacts.
RESCALE_HIGH_PERCENTILE = 99.5
_NUMERIC_KINDS = "uif"


def check_dimensions(
    label: str,
    height: int,
    width: int,
    n_slices: int = 1,
    channels: int = 1,
    sample_bytes: int = 1,
) -> None:
    """Refuse absurd sizes before any pixel is decoded (decompression bombs included).

    ``channels``: the samples per pixel, when the header says: more than four (a TIFF may
    declare thousands, 1 MB of them decoded to 1 GB) are refused before decoding too.
    ``sample_bytes``: the bytes of one decoded sample (8 for float64), when the header says:
    the decoded pixels may take at most ``BRAINLOC_MAX_DECODED_MB`` megabytes."""
    if channels > 4:
        raise _too_many_channels(label, channels)
    if height <= 0 or width <= 0 or n_slices <= 0:
        raise ScanError(f"{label}: the image has no pixels ({n_slices} x {height} x {width})")
    limits = scan_limits()
    if height * width > limits.max_image_pixels:
        raise ScanError(
            f"{label}: the image is {width} x {height} pixels, too large: slices over "
            f"{limits.max_image_pixels:,} pixels are not accepted"
        )
    if min(height, width) < MIN_SIDE:
        raise ScanError(
            f"{label}: the image is only {width} x {height} pixels; at least "
            f"{MIN_SIDE} x {MIN_SIDE} is needed"
        )
    if n_slices > limits.max_slices:
        raise ScanError(f"{label}: {n_slices} slices; at most {limits.max_slices} are accepted")
    if n_slices * height * width > MAX_TOTAL_PIXELS:
        raise ScanError(
            f"{label}: {n_slices} slices of {width} x {height} pixels is too large to analyse"
        )
    decoded = n_slices * height * width * channels * sample_bytes
    if decoded > limits.max_decoded_mb * 2**20:
        raise ScanError(
            f"{label}: {n_slices} slice(s) of {width} x {height} pixels, {channels} channel(s) "
            f"of {sample_bytes * 8}-bit samples, take {decoded / 2**20:,.1f} MB decoded: too "
            f"large to analyse (at most {limits.max_decoded_mb:,} MB; ask your administrator "
            "about BRAINLOC_MAX_DECODED_MB)"
        )


def _channels_last(volume: np.ndarray, label: str) -> tuple[np.ndarray, bool]:
    """Return (N, H, W, 3) data and whether the image had a single channel."""
    if volume.ndim == 3:
        return volume[..., np.newaxis], True
    if volume.ndim != 4:
        raise ScanError(f"{label}: unsupported image layout with shape {volume.shape}")
    channels = volume.shape[-1]
    if channels == 1:
        return volume, True
    if channels == 2:  # grey + alpha: the alpha channel carries no MR signal.
        return volume[..., :1], True
    if channels == 3:
        return volume, False
    if channels == 4:  # RGBA screenshots: drop alpha.
        return volume[..., :3], False
    raise _too_many_channels(label, channels)


def _too_many_channels(label: str, channels: int) -> ScanError:
    return ScanError(
        f"{label}: the image has {channels} channels; supported are 1 (one sequence), "
        "3 (pre-contrast, FLAIR, post-contrast) or 4 (RGBA)"
    )


def _bit_depth(dtype: np.dtype) -> str:
    """How a radiologist would name a pixel type: "16-bit", "signed 16-bit", "floating-point"."""
    if dtype.kind == "f":
        return "floating-point"
    bits = f"{dtype.itemsize * 8}-bit"
    return f"signed {bits}" if dtype.kind == "i" else bits


def _to_uint8(volume: np.ndarray, label: str) -> tuple[np.ndarray, str | None]:
    """Rescale any numeric dtype to uint8 per channel over the whole case."""
    if volume.dtype == np.uint8:
        return volume, None
    if volume.dtype == np.bool_:
        raise ScanError(
            f"{label}: this is a binary (1-bit) image, i.e. a mask, not an MRI scan; "
            "upload the scan image itself"
        )
    if volume.dtype.kind not in _NUMERIC_KINDS or volume.dtype.itemsize > 8:
        raise ScanError(f"{label}: unsupported pixel type {volume.dtype}")
    data = volume.astype(np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        # NaN marks "no signal" (outside the brain mask of a processed NIfTI): the darkest
        # value, not 0, which lies mid-grey in z-scored or otherwise signed data.
        low = float(data[finite].min()) if finite.any() else 0.0
        high = float(data[finite].max()) if finite.any() else 0.0
        data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    out = np.empty(data.shape, dtype=np.uint8)
    # Percentiles on a strided sample keep this fast on large volumes.
    for channel in range(data.shape[-1]):
        values = data[..., channel]
        sample = values.ravel()[:: max(1, values.size // 1_000_000)]
        low = float(sample.min())
        high = float(np.percentile(sample, RESCALE_HIGH_PERCENTILE))
        if high <= low:
            high = float(values.max())
        if high <= low:
            out[..., channel] = 0
            continue
        scaled = (values - low) * (255.0 / (high - low))
        out[..., channel] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return (
        out,
        f"{_bit_depth(volume.dtype)} intensities were rescaled to 8 bits (0-255) for the models",
    )


def check_not_mask(slices: np.ndarray, label: str) -> None:
    """Refuse images that are masks (two grey levels) or blank.

    Args:
        slices: uint8 (N, H, W, 3). The whole case is judged, so empty edge
            slices of a volume do not count as blank.
    """
    lowest, highest = int(slices.min()), int(slices.max())
    if lowest == highest:
        if "mask" in label.lower():
            raise ScanError(f"{label}: this is an empty tumor mask, not an MRI scan")
        raise ScanError(f"{label}: the image is blank (every pixel has the value {lowest})")
    exact = not np.any((slices != lowest) & (slices != highest))
    # A real MR slice spreads its foreground over many grey levels; a mask puts
    # all of it at one value (a JPEG-compressed mask: near one value). Faint edge
    # slices of a volume have little contrast, so only high-contrast images count.
    foreground = slices > lowest + 16
    near_top = np.count_nonzero(foreground & (slices >= highest - 16))
    contrast = highest - lowest >= 128
    if exact or (contrast and near_top > 0.9 * np.count_nonzero(foreground)):
        raise ScanError(
            f"{label}: this looks like a binary mask (only the values {lowest} and "
            f"{highest}), not an MRI scan; upload the scan image itself"
        )


def _channels_identical(slices: np.ndarray) -> bool:
    """True when an RGB image is really grey (JPEG noise tolerated)."""
    step = max(1, slices.shape[0] // 8)
    sample = slices[::step].astype(np.int16)
    return bool(
        np.mean(np.abs(sample[..., 0] - sample[..., 1])) < 0.5
        and np.mean(np.abs(sample[..., 1] - sample[..., 2])) < 0.5
    )


def build_scan(
    volume: np.ndarray,
    *,
    label: str,
    source_format: str,
    names: tuple[str, ...] | None = None,
    spacing_mm: tuple[float, float] | None = None,
    slice_thickness_mm: float | None = None,
    notes: tuple[str, ...] = (),
    positions_mm: tuple[tuple[float, float, float], ...] | None = None,
    header: SeriesHeader | None = None,
    gaps_after: tuple[int, ...] = (),
) -> Scan:
    """Normalise a decoded array into a :class:`Scan`.

    Args:
        volume: (N, H, W) or (N, H, W, C) numeric array, channels last.
        label: the file name, used in error messages.
        source_format: the format key ("tiff", "png", ...).
        names: one label per slice; defaults to "label [slice k]".
        spacing_mm, slice_thickness_mm: geometry, when the format carries it.
        notes: remarks made by the reader.
        positions_mm: each slice's position in patient coordinates (DICOM), when known.
        header: what a DICOM header says the series is (description, plane, contrast).
        gaps_after: slices followed by a gap in the stack (:attr:`Scan.gaps_after`).
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4) or volume.shape[0] == 0:
        raise ScanError(f"{label}: unsupported image layout with shape {volume.shape}")
    check_dimensions(label, volume.shape[1], volume.shape[2], volume.shape[0])
    volume, single = _channels_last(volume, label)
    slices, rescale_note = _to_uint8(volume, label)
    notes = notes + ((rescale_note,) if rescale_note else ())
    if single:
        slices = np.repeat(slices, 3, axis=-1)
    check_not_mask(slices, label)
    if not single and _channels_identical(slices):
        single = True
        notes += ("the three colour channels are identical, so the image holds one sequence",)
    if single:
        notes += (SINGLE_SEQUENCE_NOTE,)
    n_slices = slices.shape[0]
    if names is None:
        names = (
            (label,)
            if n_slices == 1
            else tuple(f"{label} [slice {k + 1}]" for k in range(n_slices))
        )
    if len(names) != n_slices:
        raise ValueError(f"{len(names)} names for {n_slices} slices")
    if positions_mm is not None and len(positions_mm) != n_slices:
        raise ValueError(f"{len(positions_mm)} positions for {n_slices} slices")
    if spacing_mm is not None:
        # Rounded: headers store float32, and 0.800000011920929 mm helps nobody.
        spacing_mm = (round(float(spacing_mm[0]), 6), round(float(spacing_mm[1]), 6))
        if not all(np.isfinite(spacing_mm)) or min(spacing_mm) <= 0:
            spacing_mm = None
    if slice_thickness_mm is not None:
        slice_thickness_mm = round(float(slice_thickness_mm), 6)
        if not np.isfinite(slice_thickness_mm) or slice_thickness_mm <= 0:
            slice_thickness_mm = None
    return Scan(
        slices=np.ascontiguousarray(slices),
        source_format=source_format,
        names=tuple(names),
        sequences_present=FLAIR_ONLY if single else ALL_SEQUENCES,
        spacing_mm=spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        notes=notes,
        positions_mm=positions_mm,
        header=header,
        gaps_after=gaps_after,
    )
