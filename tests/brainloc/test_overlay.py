"""Overlays checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from brainloc.overlay import (
    apply_window,
    display_image,
    heatmap_colors,
    mask_outline,
    mask_png_array,
    overlay_heatmap,
    overlay_mask,
    render,
    window_from_percentiles,
)
from tests.brainloc.scan_factory import synthetic_slice

GREY = np.full((32, 32, 3), 100, dtype=np.uint8)


def _square_mask() -> np.ndarray:
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:16, 10:20] = True
    return mask


def test_fill_blends_red_with_opacity_and_leaves_the_rest():
    out = overlay_mask(GREY, _square_mask(), style="fill", opacity=0.5)
    assert tuple(out[10, 12]) == (178, 50, 50)  # 0.5 * 100 + 0.5 * (255, 0, 0), rounded
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(GREY[10, 12]) == (100, 100, 100), "the input must not be modified"


def test_opacity_zero_and_one():
    mask = _square_mask()
    np.testing.assert_array_equal(overlay_mask(GREY, mask, opacity=0.0), GREY)
    assert tuple(overlay_mask(GREY, mask, opacity=1.0)[10, 12]) == (255, 0, 0)


def test_outline_only_colours_the_border():
    out = overlay_mask(GREY, _square_mask(), style="outline")
    assert tuple(out[8, 12]) == (255, 0, 0)  # top edge
    assert tuple(out[12, 10]) == (255, 0, 0)  # left edge
    assert tuple(out[12, 15]) == (100, 100, 100)  # interior untouched
    assert tuple(out[7, 12]) == (100, 100, 100)  # outside untouched
    red = np.all(out == (255, 0, 0), axis=-1)
    assert red.sum() == 2 * 8 + 2 * 10 - 4


def test_fill_and_outline():
    out = overlay_mask(GREY, _square_mask(), style="fill+outline", opacity=0.5)
    assert tuple(out[8, 12]) == (255, 0, 0)
    assert tuple(out[12, 15]) == (178, 50, 50)


def test_outline_thickness():
    assert mask_outline(_square_mask(), thickness=2).sum() == 80 - 4 * 6


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="style"):
        overlay_mask(GREY, _square_mask(), style="glow")
    with pytest.raises(ValueError, match="opacity"):
        overlay_mask(GREY, _square_mask(), opacity=1.5)
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(GREY, np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="sequence"):
        display_image(GREY, "T2")


def test_display_picks_the_sequence_as_grey():
    image = synthetic_slice((64, 64))
    for index, sequence in enumerate(("pre-contrast", "FLAIR", "post-contrast")):
        shown = display_image(image, sequence)
        for channel in range(3):
            np.testing.assert_array_equal(shown[..., channel], image[..., index])
    np.testing.assert_array_equal(display_image(image, "composite"), image)


def test_window_stretches_and_clips():
    values = np.array([[10, 20, 30, 40]], dtype=np.uint8)
    np.testing.assert_array_equal(apply_window(values, 20, 30), [[0, 0, 255, 255]])
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 1] = np.arange(16).reshape(4, 4) * 4
    shown = display_image(image, "FLAIR", window=(0, 30))
    assert shown[0, 0, 0] == 0 and shown[3, 3, 0] == 255
    assert shown[1, 0, 0] == round(16 * 255 / 30)


def test_percentile_window_ignores_background():
    image = synthetic_slice((64, 64))
    low, high = window_from_percentiles(image[..., 1], 1, 99)
    assert low > 0
    shown = display_image(image, "FLAIR", window_percentiles=(1, 99))
    brain = image[..., 1] > 0
    assert shown[..., 0][brain].max() == 255


def test_heatmap_goes_from_blue_to_red_and_blends():
    colours = heatmap_colors(np.array([[0.0, 1.0]]))
    assert colours[0, 0, 2] > colours[0, 0, 0]  # cold is blue
    assert colours[0, 1, 0] > colours[0, 1, 2]  # hot is red
    heat = np.zeros((32, 32), np.float32)
    heat[:, 16:] = 1.0
    out = overlay_heatmap(GREY, heat, opacity=0.5)
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert out[0, 20, 0] > 100 and out[0, 20, 2] < 100


def test_render_and_mask_png():
    image = synthetic_slice((32, 32))
    out = render(image, _square_mask(), sequence="post-contrast", style="outline")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[8, 12]) == (255, 0, 0)
    assert set(np.unique(mask_png_array(_square_mask()))) == {0, 255}
