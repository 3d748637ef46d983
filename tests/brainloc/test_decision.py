"""The volume rule (brainloc.decision): by hand, as properties, and through the real pipeline;
and how a segmenter ensemble averages its members."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainloc.decision import ensemble_probability_map, tumor_calls
from brainloc.inference import Pipeline
from brainloc.model_meta import CLASSIFIER_NAME, load_spec
from brainloc.scans import Scan
from tests.brainloc.conftest import build_tiny_models
from tests.brainloc.scan_factory import synthetic_slice, tumor_like_slice


def test_runs_above_the_lower_threshold_join_a_slice_above_the_threshold():
    p = [0.1, 0.3, 0.6, 0.25, 0.1, 0.3, 0.45, 0.3, 0.05, 0.9]
    assert tumor_calls(p, 0.5, 0.2).tolist() == [
        False, True, True, True,   # 0.3 and 0.25 continue the 0.6 slice
        False, False, False, False,  # a run that never reaches 0.5 stays negative
        False, True,
    ]  # fmt: skip
    assert tumor_calls(p, 0.5).tolist() == [x >= 0.5 for x in p]
    assert not tumor_calls([0.4, 0.45, 0.3], 0.5, 0.2).any()


def test_the_rule_does_not_join_slices_across_a_gap():
    # Slices 0-2 and 3-4 lie on either side of missing slices (a DICOM series with a gap):
    # the faint slice 3 is no neighbour of the tumor on slice 2, so it is not called.
    p = [0.1, 0.3, 0.6, 0.3, 0.25]
    assert tumor_calls(p, 0.5, 0.2).tolist() == [False, True, True, True, True]
    assert tumor_calls(p, 0.5, 0.2, gaps_after=(2,)).tolist() == [False, True, True, False, False]
    # Each part is a volume of its own: a part with its own tumor is extended within itself.
    both = [0.3, 0.7, 0.3, 0.9, 0.3]
    assert tumor_calls(both, 0.5, 0.2, gaps_after=(1,)).tolist() == [True] * 5
    assert tumor_calls(both, 0.5, 0.2, gaps_after=(0, 2)).tolist() == [
        False, True, True, True, True,
    ]  # fmt: skip
    # The single-slice rule has nothing to join, so gaps change nothing there.
    assert tumor_calls(p, 0.5, None, gaps_after=(2,)).tolist() == tumor_calls(p, 0.5).tolist()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="extend_threshold"):
        tumor_calls([0.9, 0.3], 0.5, 0.6)
    with pytest.raises(ValueError, match="extend_threshold"):  # even with no slice called
        tumor_calls([0.1, 0.3], 0.5, 0.0)
    with pytest.raises(ValueError, match="one probability per slice"):
        tumor_calls(np.zeros((2, 2)), 0.5, 0.2)
    with pytest.raises(ValueError, match=r"gaps after slices \[2\] in 3 slices"):
        tumor_calls([0.9, 0.3, 0.3], 0.5, 0.2, gaps_after=(2,))  # no slice after the last


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    st.floats(0.3, 0.9),
    st.floats(0.01, 1.0),
)
def test_the_rule_only_extends_called_runs(probabilities, threshold, share):
    extend = threshold * share
    p = np.array(probabilities)
    calls = tumor_calls(p, threshold, extend)
    seeds = p >= threshold
    assert (calls >= seeds).all()  # every slice the single-slice rule calls stays called
    assert not (calls & (p < extend)).any()  # nothing below the lower threshold is called
    assert calls.any() == seeds.any()  # the volume is positive exactly as before
    edges = np.flatnonzero(np.diff(np.concatenate([[0], calls.astype(int), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        assert seeds[start:stop].any()  # every called run holds a slice above the threshold


def _faint_slice(seed: int) -> np.ndarray:
    # The tiny classifier gives P = sigmoid(20 * max(post-contrast) - 10): 117/255 -> about 0.3.
    image = tumor_like_slice(seed=seed)
    image[100:148, 60:108, 2] = 117
    return image


@pytest.fixture(scope="module")
def volume_pipeline(tmp_path_factory) -> Pipeline:
    return Pipeline.load(build_tiny_models(tmp_path_factory.mktemp("m"), extend_threshold=0.2))


def test_pipeline_extends_calls_in_a_volume_and_segments_those_slices(volume_pipeline):
    slices = np.stack(
        [synthetic_slice(seed=1), _faint_slice(2), tumor_like_slice(seed=3), _faint_slice(4)]
        + [synthetic_slice(seed=5), _faint_slice(6)]
    )
    alone = volume_pipeline.analyze_case(slices)
    volume = volume_pipeline.analyze_case(slices, volume=True)
    probabilities = [r.tumor_probability for r in volume.slices]
    assert 0.2 < probabilities[1] < 0.5 and probabilities[2] > 0.9
    assert [r.has_tumor for r in alone.slices] == [False, False, True, False, False, False]
    # Slices 1 and 3 continue the tumor of slice 2; slice 5 is faint too but stands alone.
    assert [r.has_tumor for r in volume.slices] == [False, True, True, True, False, False]
    assert volume.slices[1].mask.any() and volume.slices[3].mask.any()
    assert not volume.slices[5].mask.any()
    assert volume.findings.tumor_slices == (1, 2, 3)
    # A scan of several slices is a volume; the same slices one by one are not.
    scan = Scan(slices=slices, source_format="nifti", names=tuple(f"s{i}" for i in range(6)))
    assert [r.has_tumor for r in volume_pipeline.analyze_scan(scan).slices] == [
        r.has_tumor for r in volume.slices
    ]
    assert not volume_pipeline.analyze(slices[1]).has_tumor


def test_pipeline_does_not_extend_calls_across_a_gap_in_the_scan(volume_pipeline):
    slices = np.stack([_faint_slice(2), tumor_like_slice(seed=3), _faint_slice(4)])
    names = ("IM1.dcm", "IM2.dcm", "IM3.dcm")
    whole = Scan(slices=slices, source_format="dicom", names=names)
    assert [r.has_tumor for r in volume_pipeline.analyze_scan(whole).slices] == [True] * 3
    # Slices are missing between IM2 and IM3: IM3's faint signal is not IM2's tumor going on.
    gapped = Scan(slices=slices, source_format="dicom", names=names, gaps_after=(1,))
    case = volume_pipeline.analyze_scan(gapped)
    assert [r.has_tumor for r in case.slices] == [True, True, False]
    assert not case.slices[2].mask.any()


def test_metadata_refuses_a_lower_threshold_above_the_threshold(tmp_path):
    models = build_tiny_models(tmp_path, extend_threshold=0.2)
    assert load_spec(models, CLASSIFIER_NAME).extend_threshold == 0.2
    path = models / f"{CLASSIFIER_NAME}.json"
    meta = json.loads(path.read_text())
    meta["decision"]["extend_threshold"] = 0.7
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="extend_threshold must be in"):
        load_spec(models, CLASSIFIER_NAME)


def test_an_ensemble_averages_its_members_and_reuses_prepared_input():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
    prepared_for = []

    def prepare(slices, size, scaling):
        prepared_for.append((size, scaling))
        return slices / 100.0

    def predict(model, batch):
        return model(batch)[..., :1]

    already = images / 50.0  # stands for the classifier's input: not what prepare() returns
    members = [(lambda b: b * 2.0, 4, "uint8/255"), (lambda b: b + 1.0, 4, "slice-p99")]
    mean = ensemble_probability_map(members, images, prepare, predict, (4, "slice-p99", already))
    expected = ((images / 100.0) * 2.0 + (already + 1.0)) / 2
    np.testing.assert_allclose(mean, expected[..., :1])
    assert prepared_for == [(4, "uint8/255")]  # the slice-p99 member took the prepared batch
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_probability_map([], images, prepare, predict)
