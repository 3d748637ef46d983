"""The arithmetic the models run in: float32 as trained, or a mixed-bfloat16 copy.

The copy must be the same network with the same weights, give the same calls as float32 on
real slices, and leave Grad-CAM and the probabilities' last layer in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainloc.inference import Pipeline, cpu_has_amx_bf16, mixed_bfloat16_copy, resolve_precision
from brainloc.settings import inference_precision
from tests.brainloc.conftest import LGG_CASE

from brainloc.scans import read_scan_path  # isort: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", "auto"), ("auto", "auto"), ("float32", "float32"), (" BFloat16 ", "bfloat16")],
)
def test_the_setting_reads_the_three_choices(raw, expected):
    assert inference_precision({"BRAINLOC_INFERENCE_PRECISION": raw}) == expected
    assert inference_precision({}) == "auto"


def test_a_bad_setting_names_the_choices():
    with pytest.raises(ValueError, match="must be one of auto, float32, bfloat16, got 'fp16'"):
        inference_precision({"BRAINLOC_INFERENCE_PRECISION": "fp16"})
    with pytest.raises(ValueError, match="got 'half'"):
        resolve_precision("half")


def test_amx_is_read_from_the_cpu_flags(tmp_path):
    with_amx = tmp_path / "amx"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n")
    assert cpu_has_amx_bf16(with_amx)
    assert not cpu_has_amx_bf16(without)
    assert not cpu_has_amx_bf16(tmp_path / "missing")


def test_explicit_choices_are_kept_and_auto_follows_this_cpu():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("auto") == ("bfloat16" if cpu_has_amx_bf16() else "float32")


def test_the_model_card_says_what_this_server_runs():
    from brainloc.model_card import precision_note

    assert "compute in float32, exactly as trained (set by" in precision_note("float32")
    assert "compute in bfloat16 (set by" in precision_note("bfloat16")
    auto = precision_note("auto")
    assert "chosen automatically" in auto
    assert ("bfloat16" in auto) == cpu_has_amx_bf16()


def test_the_copy_is_the_same_network_computing_in_bfloat16():
    from brainloc.modeling import build_encoder_classifier, build_resunet

    segmenter = build_resunet(32, level_filters=(4, 8), bottleneck_filters=8)
    for model in (segmenter, build_encoder_classifier(segmenter)):
        copy = mixed_bfloat16_copy(model)
        assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
        for mine, theirs in zip(copy.weights, model.weights, strict=True):
            assert mine.dtype == "float32"
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
        inner = [layer for layer in copy.layers[:-1] if layer.weights]
        assert len(inner) > 5 and all(
            layer.dtype_policy.name == "mixed_bfloat16" for layer in inner
        )
        assert copy.layers[-1].dtype_policy.name == "float32"
        batch = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
        ours, theirs = np.asarray(copy(batch)), np.asarray(model(batch))
        assert ours.dtype == np.float32
        assert 0 < np.abs(ours - theirs).max() < 0.05


def _twins(pipeline: Pipeline) -> tuple[Pipeline, Pipeline]:
    parts = (
        pipeline.classifier,
        pipeline.segmenters,
        pipeline.classifier_spec,
        pipeline.segmenter_spec,
    )
    return Pipeline(*parts, precision="float32"), Pipeline(*parts, precision="bfloat16")


def test_bfloat16_gives_the_float32_calls_and_masks_on_a_real_case(shipped_pipeline, lgg_dir):
    exact, fast = _twins(shipped_pipeline)
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    images = np.concatenate(
        [read_scan_path(lgg_dir / f"{LGG_CASE}_{n}.tif").slices for n in range(1, 21)]
    )
    a = exact.analyze_case(images, volume=True)
    b = fast.analyze_case(images, volume=True)
    pa = np.array([s.tumor_probability for s in a.slices])
    pb = np.array([s.tumor_probability for s in b.slices])
    assert not np.array_equal(pa, pb)  # it really ran other arithmetic
    assert np.abs(pa - pb).max() < 0.02
    assert [s.has_tumor for s in a.slices] == [s.has_tumor for s in b.slices]
    assert a.masks.any()
    agreement = 2 * (a.masks & b.masks).sum() / (a.masks.sum() + b.masks.sum())
    assert agreement > 0.98
    # Grad-CAM runs on the float32 classifier in both.
    image = images[9]
    np.testing.assert_allclose(fast.gradcam(image), exact.gradcam(image), atol=1e-5)
