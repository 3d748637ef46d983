"""An interrupted training run, resumed, ends as the uninterrupted run does: a real run killed
(SIGKILL, as a power cut would) at the end of an epoch, then run again with the same command.
A finished run is not silently run again."""

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from training import train

from .conftest import CASES

REPO = Path(__file__).resolve().parents[2]

#: ``python -c`` this, then training.train's arguments: the run is killed when the epoch
#: numbered STOP_AFTER (from 1) ends, either once every callback, the backup included, has
#: finished it (DIE_IN=epoch_end) or when the backup of it starts to be written (DIE_IN=backup,
#: after the log has its row).
CRASHING_RUN = """
import os, signal, sys
import keras
from training import train

stop_after, die_in = int(os.environ["STOP_AFTER"]), os.environ["DIE_IN"]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class PowerCut(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if die_in == "epoch_end" and epoch + 1 == stop_after:
            die()


fit = keras.Model.fit


def fit_then_die(self, *args, callbacks=(), **kwargs):
    return fit(self, *args, callbacks=[*callbacks, PowerCut()], **kwargs)


save = keras.callbacks.BackupAndRestore._save_model


def save_then_die(self):
    if die_in == "backup" and self._current_epoch == stop_after:
        die()
    save(self)


keras.Model.fit = fit_then_die
keras.callbacks.BackupAndRestore._save_model = save_then_die
train.main(sys.argv[1:])
"""


def _log(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "log.csv", newline="") as rows:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(rows)]


def _args(lgg_dir: Path, split: Path) -> list[str]:
    # A plateau run that, at this learning rate, has its best validation loss at epoch 0 and
    # is stopped early at epoch 2 (patience 2), halving the learning rate there.
    return [
        "--model", "classifier", "--data-dir", str(lgg_dir), "--split-file", str(split),
        "--input-size", "64", "--batch-size", "8", "--epochs", "4", "--patience", "2",
        "--learning-rate", "0.01",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run_args(lgg_dir, tmp_path_factory) -> list[str]:
    split = tmp_path_factory.mktemp("split") / "split.json"
    split.write_text(json.dumps({"train": [CASES[0]], "val": [CASES[1]], "test": []}))
    return _args(lgg_dir, split)


@pytest.fixture(scope="module")
def uninterrupted(run_args, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    assert train.main([*run_args, "--run-dir", str(run_dir)]) == 0
    return run_dir


def _kill_run(args: list[str], run_dir: Path, stop_after: int, die_in: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, *args, "--run-dir", str(run_dir)],
        cwd=REPO,
        env=os.environ | {"STOP_AFTER": str(stop_after), "DIE_IN": die_in, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr


def _assert_same_log(got: list[dict], expected: list[dict]) -> None:
    # Each epoch once, the same numbers: the resumed epochs drew the batches, augmentation
    # and dropout of the uninterrupted run, and early stopping stopped at the same epoch.
    assert [row["epoch"] for row in got] == [row["epoch"] for row in expected]
    for got_row, expected_row in zip(got, expected, strict=True):
        assert got_row.keys() == expected_row.keys()
        for key, value in expected_row.items():
            np.testing.assert_allclose(got_row[key], value, rtol=1e-4, err_msg=key)


def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(
    run_args, uninterrupted, tmp_path, caplog
):
    expected, cut, stop_after = _log(uninterrupted), tmp_path / "cut", 2
    _kill_run(run_args, cut, stop_after, "epoch_end")
    metadata = json.loads((cut / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == stop_after
    assert [row["epoch"] for row in _log(cut)] == [0, 1]

    caplog.clear()
    caplog.set_level(logging.INFO, logger="training.train")
    assert train.main([*run_args, "--run-dir", str(cut)]) == 0
    _assert_same_log(_log(cut), expected)
    assert not (cut / "backup").exists()
    assert f"resuming the interrupted run at epoch {stop_after}" in caplog.text

    # best.keras is the best epoch's model, saved before the interruption, not the first
    # (worse) epoch after it.
    losses = [row["val_loss"] for row in expected]
    best_epoch = int(np.argmin(losses))
    assert best_epoch < stop_after and min(losses[stop_after:]) > losses[best_epoch]
    resumed_best = keras.models.load_model(cut / "best.keras", compile=False)
    whole_best = keras.models.load_model(uninterrupted / "best.keras", compile=False)
    for got_weights, want in zip(resumed_best.get_weights(), whole_best.get_weights(), strict=True):
        np.testing.assert_allclose(got_weights, want, rtol=1e-5, atol=1e-6)


def test_a_run_cut_after_logging_an_epoch_but_before_its_backup_logs_it_once(
    run_args, uninterrupted, tmp_path, caplog
):
    cut = tmp_path / "cut"
    _kill_run(run_args, cut, 2, "backup")
    # The log has epoch 1's row, the backup only epoch 0: epoch 1 runs again.
    assert [row["epoch"] for row in _log(cut)] == [0, 1]
    assert json.loads((cut / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    caplog.set_level(logging.INFO, logger="training.train")
    assert train.main([*run_args, "--run-dir", str(cut)]) == 0
    assert "resuming the interrupted run at epoch 1" in caplog.text
    _assert_same_log(_log(cut), _log(uninterrupted))


def test_a_finished_run_is_refused_unless_started_afresh(lgg_dir, tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": list(CASES), "val": [], "test": []}))
    run_dir = tmp_path / "run"
    args = [
        "--model", "classifier", "--data-dir", str(lgg_dir), "--split-file", str(split),
        "--train-on", "train+val", "--schedule", "cosine", "--input-size", "32",
        "--batch-size", "16", "--run-dir", str(run_dir),
    ]  # fmt: skip
    assert train.main([*args, "--epochs", "1"]) == 0
    finished = {name: (run_dir / name).read_bytes() for name in ("log.csv", "args.json")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        train.main([*args, "--epochs", "2"])
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert "holds a finished run (1 epochs in log.csv" in message and "--fresh" in message
    # Nothing of the finished run was touched, its recorded arguments included.
    assert {name: (run_dir / name).read_bytes() for name in finished} == finished
    # --fresh starts over: the log holds the new run alone.
    assert train.main([*args, "--epochs", "2", "--fresh"]) == 0
    assert train.logged_epochs(run_dir / "log.csv") == [0, 1]
    assert json.loads((run_dir / "args.json").read_text())["epochs"] == "2"
    assert "fresh" not in json.loads((run_dir / "args.json").read_text())
