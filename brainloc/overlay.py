"""Pictures for people: the displayed sequence, contrast window, mask and heatmap overlays.

Pure functions, arrays in and RGB ``(H, W, 3)`` uint8 arrays out, so the pages,
the PDF report and the CLI draw exactly the same thing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from brainloc.preprocessing import CHANNELS

#: Display choices: one of the three sequences as grey, or the raw channels as colour.
SEQUENCES = (*CHANNELS, "composite")
STYLES = ("fill", "outline", "fill+outline")
TUMOR_RED = (255, 0, 0)
#: The caliper lines of the bidimensional measurement (:mod:`brainloc.calipers`).
CALIPER_YELLOW = (255, 230, 0)
DEFAULT_WINDOW_PERCENTILES = (0.5, 99.5)

# Anchor colours of a "jet"-like map (blue -> cyan -> yellow -> red), written out
# here to avoid pulling matplotlib into the runtime for one colour map.
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_COLOURS = np.array(
    [[0, 0, 143], [0, 128, 255], [128, 255, 128], [255, 200, 0], [200, 0, 0]], dtype=np.float32
)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) slice, got {image.dtype} {image.shape}")
    return image


def window_from_percentiles(
    values: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5
) -> tuple[float, float]:
    """(low, high) intensity window from percentiles of the non-zero pixels."""
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(f"bad percentiles ({low_percentile}, {high_percentile})")
    values = np.asarray(values, dtype=np.float32)
    foreground = values[values > 0]
    if foreground.size == 0:
        return 0.0, 255.0
    low, high = np.percentile(foreground, [low_percentile, high_percentile])
    return float(low), float(max(high, low + 1.0))


def apply_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to 0..255 (clipped); returns uint8 of the same shape."""
    if not high > low:
        raise ValueError(f"window high ({high}) must be above low ({low})")
    scaled = (np.asarray(values, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def display_image(
    image: np.ndarray,
    sequence: str = "FLAIR",
    window: tuple[float, float] | None = None,
    window_percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """The slice as people look at it.

    Args:
        image: uint8 (H, W, 3) slice, channels pre-contrast, FLAIR, post-contrast.
        sequence: "pre-contrast", "FLAIR", "post-contrast" (shown grey) or
            "composite" (the three channels as R, G, B, like the Kaggle TIFFs).
        window: explicit (low, high) intensities in 0..255; wins over percentiles.
        window_percentiles: (low, high) percentiles of the brain's intensities.
            With neither, the image is shown unchanged.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    image = _check_image(image)
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be one of {SEQUENCES}, got {sequence!r}")
    base = image if sequence == "composite" else image[..., CHANNELS.index(sequence)]
    if window is None and window_percentiles is not None:
        window = window_from_percentiles(base, *window_percentiles)
    if window is not None:
        base = apply_window(base, *window)
    if base.ndim == 2:
        base = np.repeat(base[..., np.newaxis], 3, axis=-1)
    return np.ascontiguousarray(base)


def mask_outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """bool (H, W): the mask's boundary pixels, ``thickness`` pixels wide, inside the mask."""
    mask = np.asarray(mask, dtype=bool)
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    eroded = ndimage.binary_erosion(mask, iterations=thickness, border_value=0)
    return mask & ~eroded


def overlay_mask(
    base: np.ndarray,
    mask: np.ndarray,
    style: str = "fill",
    opacity: float = 0.4,
    color: tuple[int, int, int] = TUMOR_RED,
    outline_thickness: int = 1,
) -> np.ndarray:
    """Draw a tumor mask on an RGB picture.

    Args:
        base: uint8 (H, W, 3) picture (e.g. from :func:`display_image`).
        mask: bool (H, W) tumor mask of the same size.
        style: "fill" (tinted with ``opacity``), "outline" (solid boundary) or
            "fill+outline".
        opacity: 0 (invisible) .. 1 (solid colour) for the fill.

    Returns:
        a new uint8 (H, W, 3) array; ``base`` is not modified.
    """
    base = _check_image(base)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != base.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {base.shape[:2]} differ in size")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    out = base.astype(np.float32)
    colour = np.asarray(color, dtype=np.float32)
    if style in ("fill", "fill+outline"):
        out[mask] = (1.0 - opacity) * out[mask] + opacity * colour
    if style in ("outline", "fill+outline"):
        out[mask_outline(mask, outline_thickness)] = colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap_colors(heatmap: np.ndarray) -> np.ndarray:
    """Colour a float (H, W) map in [0, 1] blue (low) to red (high); uint8 (H, W, 3)."""
    values = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    channels = [np.interp(values, _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def overlay_heatmap(
    base: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45, min_value: float = 0.1
) -> np.ndarray:
    """Blend a Grad-CAM style heatmap over an RGB picture.

    Args:
        base: uint8 (H, W, 3).
        heatmap: float (H, W) in [0, 1].
        opacity: blend weight where the heatmap is 1; it scales with the value so
            cold areas stay readable.
        min_value: values below this leave the picture untouched.
    """
    base = _check_image(base)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != base.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} and image {base.shape[:2]} differ in size")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    colours = heatmap_colors(heatmap).astype(np.float32)
    weight = np.where(heatmap >= min_value, opacity * np.clip(heatmap, 0, 1), 0.0)[..., None]
    out = (1.0 - weight) * base.astype(np.float32) + weight * colours
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    sequence: str = "FLAIR",
    window: tuple[float, float] | None = None,
    window_percentiles: tuple[float, float] | None = None,
    style: str = "fill",
    opacity: float = 0.4,
    heatmap: np.ndarray | None = None,
    heatmap_opacity: float = 0.45,
    calipers: dict | None = None,
) -> np.ndarray:
    """Everything at once: displayed sequence + window, then heatmap, then the mask, then
    the caliper lines (a stored ``calipers`` dict), if given."""
    picture = display_image(image, sequence, window, window_percentiles)
    if heatmap is not None:
        picture = overlay_heatmap(picture, heatmap, heatmap_opacity)
    if mask is not None:
        picture = overlay_mask(picture, mask, style, opacity)
    if calipers:
        picture = draw_calipers(picture, calipers)
    return picture


def draw_calipers(picture: np.ndarray, calipers: dict) -> np.ndarray:
    """The longest and the perpendicular diameter (a stored ``Calipers.to_dict()``) as yellow
    lines, one pixel wide, on a copy of an RGB picture of the slice's size."""
    drawn = Image.fromarray(_check_image(picture))
    pen = ImageDraw.Draw(drawn)
    for key in ("longest_line", "perpendicular_line"):
        (row0, col0), (row1, col1) = calipers[key]
        # Pixel centres are whole numbers in the calipers, half-numbers for PIL.
        pen.line([(col0 + 0.5, row0 + 0.5), (col1 + 0.5, row1 + 0.5)], fill=CALIPER_YELLOW)
    return np.asarray(drawn)


def mask_png_array(mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W) 0/255 version of a bool mask, as the Kaggle mask files are."""
    return np.asarray(mask, dtype=bool).astype(np.uint8) * 255
