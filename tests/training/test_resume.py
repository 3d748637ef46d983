"""An interrupted training run, resumed, ends as the uninterrupted run does: a real run killed
(SIGKILL, as a power cut would) right after an epoch, then run again with the same command."""

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from training import train

from .conftest import CASES

REPO = Path(__file__).resolve().parents[2]

#: ``python -c`` this, then training.train's arguments: the run is killed once ``STOP_AFTER``
#: epochs have ended, after every callback (the backup included) has finished the epoch.
CRASHING_RUN = """
import os, signal, sys
import keras
from training import train

stop_after = int(os.environ["STOP_AFTER"])


class PowerCut(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == stop_after:
            os.kill(os.getpid(), signal.SIGKILL)


fit = keras.Model.fit


def fit_then_die(self, *args, callbacks=(), **kwargs):
    return fit(self, *args, callbacks=[*callbacks, PowerCut()], **kwargs)


keras.Model.fit = fit_then_die
train.main(sys.argv[1:])
"""


def _log(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "log.csv", newline="") as rows:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(rows)]


def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(
    lgg_dir, tmp_path, caplog
):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [CASES[0]], "val": [CASES[1]], "test": []}))
    # A plateau run that, at this learning rate, has its best validation loss at epoch 0 and
    # is stopped early at epoch 2 (patience 2), halving the learning rate there.
    args = [
        "--model", "classifier", "--data-dir", str(lgg_dir), "--split-file", str(split),
        "--input-size", "64", "--batch-size", "8", "--epochs", "4", "--patience", "2",
        "--learning-rate", "0.01",
    ]  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train.main([*args, "--run-dir", str(whole)]) == 0
    expected = _log(whole)

    stop_after = 2
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, *args, "--run-dir", str(cut)],
        cwd=REPO,
        env=os.environ | {"STOP_AFTER": str(stop_after), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    metadata = json.loads((cut / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == stop_after
    assert [row["epoch"] for row in _log(cut)] == [0, 1]

    caplog.clear()
    caplog.set_level(logging.INFO, logger="training.train")
    assert train.main([*args, "--run-dir", str(cut)]) == 0
    got = _log(cut)
    # Each epoch once, the same numbers: the resumed epochs drew the batches, augmentation
    # and dropout of the uninterrupted run, and early stopping stopped at the same epoch.
    assert [row["epoch"] for row in got] == [row["epoch"] for row in expected]
    for got_row, expected_row in zip(got, expected, strict=True):
        assert got_row.keys() == expected_row.keys()
        for key, value in expected_row.items():
            np.testing.assert_allclose(got_row[key], value, rtol=1e-4, err_msg=key)
    assert not (cut / "backup").exists()
    assert f"resuming the interrupted run at epoch {stop_after}" in caplog.text

    # best.keras is the best epoch's model, saved before the interruption, not the first
    # (worse) epoch after it.
    losses = [row["val_loss"] for row in expected]
    best_epoch = int(np.argmin(losses))
    assert best_epoch < stop_after and min(losses[stop_after:]) > losses[best_epoch]
    resumed_best = keras.models.load_model(cut / "best.keras", compile=False)
    whole_best = keras.models.load_model(whole / "best.keras", compile=False)
    for got_weights, want in zip(resumed_best.get_weights(), whole_best.get_weights(), strict=True):
        np.testing.assert_allclose(got_weights, want, rtol=1e-5, atol=1e-6)
