"""The shipped models on real LGG slices restored from ../shared/lgg (a test-split patient).

Skipped, with the reason, until models/classifier.* and models/segmenter.* exist.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from brainloc.scans import read_scan_path
from tests.brainloc.conftest import LGG_CASE

TUMOR_SLICE = 10  # the case's largest tumor (about 6,200 pixels)
CLEAN_SLICES = (3, 18)  # brain but no tumor


def _slice(lgg_dir, number):
    image = read_scan_path(lgg_dir / f"{LGG_CASE}_{number}.tif").slices[0]
    truth = tifffile.imread(lgg_dir / f"{LGG_CASE}_{number}_mask.tif") > 0
    return image, truth


def _dice(a, b):
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_tumor_slice_is_positive_and_the_mask_overlaps_the_truth(shipped_pipeline, lgg_dir):
    image, truth = _slice(lgg_dir, TUMOR_SLICE)
    result = shipped_pipeline.analyze(image)
    assert result.has_tumor
    assert result.tumor_probability >= shipped_pipeline.classifier_spec.threshold
    assert result.threshold == shipped_pipeline.classifier_spec.threshold
    assert result.mask.shape == truth.shape
    assert _dice(result.mask, truth) > 0.5
    assert result.findings.centroid is not None
    row, col = (int(round(v)) for v in result.findings.centroid)
    assert truth[max(0, row - 15) : row + 15, max(0, col - 15) : col + 15].any()


@pytest.mark.parametrize("number", CLEAN_SLICES)
def test_clean_slice_is_negative(shipped_pipeline, lgg_dir, number):
    image, truth = _slice(lgg_dir, number)
    assert not truth.any()
    result = shipped_pipeline.analyze(image)
    assert not result.has_tumor
    assert not result.mask.any()


def test_whole_case_finds_the_tumor_slices(shipped_pipeline, lgg_dir):
    numbers = range(1, 21)
    images = np.stack([_slice(lgg_dir, n)[0] for n in numbers])
    truth = np.stack([_slice(lgg_dir, n)[1] for n in numbers])
    case = shipped_pipeline.analyze_case(images, batch_size=8)
    predicted = set(case.findings.tumor_slices)
    actual = {k for k in range(len(numbers)) if truth[k].any()}
    assert len(predicted & actual) >= 0.7 * len(actual)
    assert case.findings.largest_slice in actual
    assert _dice(case.masks, truth) > 0.5


def test_gradcam_is_hotter_on_the_tumor(shipped_pipeline, lgg_dir):
    image, truth = _slice(lgg_dir, TUMOR_SLICE)
    heat = shipped_pipeline.gradcam(image)
    assert heat.shape == truth.shape
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat[truth].mean() > heat[~truth].mean()


def test_the_shipped_mask_is_the_mean_of_the_segmenter_ensemble(shipped_pipeline, lgg_dir):
    """Every weights file the segmenter metadata names runs on its own scaling, and the mask is
    their mean probability map thresholded (brainloc.model_meta: ensemble)."""
    from brainloc.inference import Pipeline
    from brainloc.preprocessing import prepare_images, probability_map_to_mask

    spec = shipped_pipeline.segmenter_spec
    # Keras' predict runs the models as trained, so compare with the float32 pipeline (the
    # bfloat16 one is compared with float32 in test_precision).
    exact = Pipeline(
        shipped_pipeline.classifier,
        shipped_pipeline.segmenters,
        shipped_pipeline.classifier_spec,
        spec,
        precision="float32",
    )
    assert len(shipped_pipeline.segmenters) == len(spec.members)
    image, truth = _slice(lgg_dir, TUMOR_SLICE)
    maps = [
        model.predict(prepare_images(image, member.input_size, member.scaling), verbose=0)[0]
        for model, member in zip(shipped_pipeline.segmenters, spec.members, strict=True)
    ]
    expected = probability_map_to_mask(np.mean(maps, axis=0), truth.shape, spec.threshold)
    got = exact.segment(image)[0]
    # The graph the pipeline runs and Keras' predict may differ in the last float bits.
    assert (got != expected).sum() <= 0.001 * got.size
    assert _dice(got, truth) > 0.5
