"""The robustness report: each input change does what it says, and the CLI runs the real
pipeline on restored patients once per change."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from brainloc.model_meta import models_available
from training.robustness import TRANSFORMS

from .conftest import REPO


def _case(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, size=(3, 64, 64, 3), dtype=np.uint8)
    images[:, :8] = 0  # background
    return images


def test_each_change_keeps_the_shape_and_changes_what_it_names():
    images = _case()
    for name, transform in TRANSFORMS.items():
        out = transform(images)
        assert out.shape == images.shape and out.dtype == np.uint8, name
        assert not np.array_equal(out, images), name
    flair = TRANSFORMS["FLAIR only"](images)
    assert all(np.array_equal(flair[..., k], images[..., 1]) for k in range(3))
    darker = TRANSFORMS["darker x0.75"](images).astype(int)
    assert np.abs(darker - np.rint(images * 0.75)).max() == 0
    assert TRANSFORMS["brighter x1.25"](np.full((1, 2, 2, 3), 250, np.uint8)).max() == 255
    # Gamma keeps black and white and the order of intensities.
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    for name in ("gamma 0.67", "gamma 1.5"):
        out = TRANSFORMS[name](ramp).ravel()
        assert out[0] == 0 and out[-1] == 255 and np.all(np.diff(out[::3].astype(int)) >= 0)
    # Noise is seeded (the same every run) and leaves the background black.
    noise = TRANSFORMS["noise sd 6"]
    assert np.array_equal(noise(images), noise(images))
    assert not noise(images)[:, :8].any()
    # The 16-bit copy goes through the app's own reader: same ranking of intensities.
    sixteen = TRANSFORMS["16-bit, rescaled"](images)
    assert np.corrcoef(sixteen[..., 1].ravel(), images[..., 1].ravel())[0, 1] > 0.99
    # The coarser T1 series come back through the app's resampling. On a linear ramp, 2×2 block
    # means interpolated at the fine pixels give the ramp back exactly inside the grid (the
    # border pixel lies outside it); FLAIR is untouched.
    rows, cols = np.mgrid[0:64, 0:64]
    ramp = np.stack([rows + 2 * cols, 60 + rows, 190 - 2 * rows - cols], axis=-1)
    ramp = np.repeat(ramp[np.newaxis], 3, axis=0).astype(np.uint8)
    coarse = TRANSFORMS["T1s at half matrix"](ramp)
    assert np.array_equal(coarse[..., 1], ramp[..., 1])
    inner = (slice(None), slice(1, -1), slice(1, -1))
    for channel in (0, 2):
        difference = coarse[..., channel][inner].astype(int) - ramp[..., channel][inner]
        assert np.abs(difference).max() <= 1, channel
    assert not coarse[:, :, -1, 0].any() and not coarse[:, 0, :, 2].any()


@pytest.mark.skipif(not models_available(), reason="shipped models not in models/")
def test_the_cli_reports_every_change_against_the_unchanged_run(lgg_dir, tmp_path):
    out = tmp_path / "robustness.json"
    result = subprocess.run(
        [sys.executable, "-m", "training.robustness", "--data-dir", str(lgg_dir)]
        + ["--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert list(rows) == ["as given", *TRANSFORMS]
    assert rows["as given"]["calls changed"] == 0.0
    assert report["counts"]["patients"] == 2 and report["counts"]["slices"] == 44
    for name, row in rows.items():
        assert all(0.0 <= value <= 1.0 for value in row.values()), name
        assert f"{name:<18}" in result.stdout
    # Dropping two of the three sequences changes what the models see: some call or Dice moves.
    flair, given = rows["FLAIR only"], rows["as given"]
    assert flair["calls changed"] > 0 or flair["Dice/vol"] != given["Dice/vol"]


def test_the_cli_refuses_a_folder_without_cases(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.robustness", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
