"""The evaluation CLI end to end on two restored patients with the shipped models."""

import json
import os
import re
import subprocess
import sys

import pytest

from brainloc.model_meta import models_available
from training.evaluate import split_portions

from .conftest import CASES, REPO, RESTORE


@pytest.mark.skipif(not models_available(), reason="shipped models not in models/")
def test_evaluate_writes_the_agreed_keys_with_real_numbers(lgg_dir, tmp_path):
    out = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--data-dir", str(lgg_dir), "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"BRAINLOC_INFERENCE_PRECISION": "float32"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Dice per volume, mean" in result.stdout
    report = json.loads(out.read_text())
    # The setting reaches the CLI, and the report says which arithmetic produced it.
    assert report["models"]["precision"] == "float32"
    assert re.search(r"arithmetic\s+float32", result.stdout)
    required = {
        "classifier": ["accuracy", "sensitivity", "specificity", "roc_auc"],
        "segmentation": [
            "dice_per_volume_mean",
            "dice_per_volume_median",
            "dice_tumor_slices_mean",
        ],
        "pipeline": ["false_positive_slice_rate"],
        "counts": ["patients", "slices"],
        "timing": ["seconds_per_slice"],
    }
    for group, keys in required.items():
        for key in keys:
            value = report[group][key]
            assert isinstance(value, (int, float)), (group, key, value)
    assert report["counts"] == {
        "patients": 2,
        "slices": 44,
        "tumor_slices": report["counts"]["tumor_slices"],
        # Both patients are held-out test patients: no warning about optimistic numbers.
        "by_split": {"train": 0, "validation": 0, "test": 2, "unseen": 0},
    }
    assert [case["split"] for case in report["per_case"]] == ["test", "test"]
    assert "were used to train" not in result.stdout
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert 0.0 <= report["classifier"][key] <= 1.0
    # Real models on real patients: far better than chance, and not a constant answer.
    assert report["classifier"]["roc_auc"] > 0.85
    assert report["classifier"]["accuracy"] > 0.8
    assert 0.4 < report["segmentation"]["dice_per_volume_mean"] <= 1.0
    dice = [case["dice_volume"] for case in report["per_case"]]
    assert len(set(dice)) == 2
    for case in report["per_case"]:
        assert 0 <= case["tumor_slices_called"] <= case["tumor_slices"]
        assert 0 <= case["false_positive_slices"] <= case["slices"] - case["tumor_slices"]
        # The per-patient table lists each case with its Dice, worst first.
        assert f"{case['case']} " in result.stdout and f"{case['dice_volume']:.3f}" in result.stdout
    found = sum(case["tumor_slices_called"] for case in report["per_case"])
    assert found / report["counts"]["tumor_slices"] == pytest.approx(
        report["classifier"]["sensitivity"]
    )
    # Every tumor slice sits in exactly one size bin; the bins add up to the sensitivity.
    by_size = report["classifier"]["sensitivity_by_tumor_size"]
    assert sum(size["tumor_slices"] for size in by_size) == report["counts"]["tumor_slices"]
    assert sum(size["called"] for size in by_size) == found
    assert "tumor slices found, by the tumor's share of the slice area" in result.stdout
    table = result.stdout[result.stdout.index("per patient") :]
    worst, best = sorted(report["per_case"], key=lambda case: case["dice_volume"])
    assert table.index(worst["case"]) < table.index(best["case"])
    assert report["timing"]["seconds_per_slice"] > 0
    # The diameters the app reports, against the truth masks' own, per patient and overall.
    agreement = report["measurement"]["largest_cross_section"]
    assert agreement["patients"] == 2 and 1 <= agreement["measured"] <= 2
    for case in report["per_case"]:
        truth = case["largest_cross_section"]["truth"]
        assert truth["unit"] == "px" and truth["longest"] >= truth["perpendicular"] > 0
    assert 0.0 <= agreement["longest_relative_error_median"] < 0.5
    assert "largest cross-section (longest x perpendicular diameter)" in result.stdout


def test_evaluate_reports_a_bad_directory_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            "--data-dir",
            str(tmp_path),
            "--json",
            str(tmp_path / "o.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "Kaggle" in result.stderr
    assert "Traceback" not in result.stderr


def _evaluate(data_dir, out, *extra, env=None):
    return subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--data-dir", str(data_dir), "--json", str(out)]
        + list(extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _copy(lgg_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(lgg_dir, copy)
    return copy


def test_a_json_path_that_is_a_folder_is_refused_before_any_work(lgg_dir, tmp_path):
    result = _evaluate(lgg_dir, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a folder" in result.stderr


def test_a_damaged_slice_in_any_case_is_named_before_the_run(lgg_dir, tmp_path):
    copy = _copy(lgg_dir, tmp_path)
    damaged = sorted(copy.rglob("*_3.tif"))[-1]  # a slice of the last case
    damaged.write_bytes(b"not a tiff at all")
    out = tmp_path / "metrics.json"
    result = _evaluate(copy, out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(damaged) in result.stderr and "cannot be read as a TIFF image" in result.stderr
    assert not out.exists()


@pytest.mark.skipif(not models_available(), reason="shipped models not in models/")
def test_upper_case_extensions_and_hidden_files_are_read_as_the_layout(lgg_dir, tmp_path):
    copy = _copy(lgg_dir, tmp_path)
    case = sorted(path for path in copy.rglob("*") if path.is_dir() and "TCGA" in path.name)[0]
    for path in case.glob("*.tif"):
        path.rename(path.with_suffix(".TIF"))
    (case / f"._{case.name}_1.TIF").write_bytes(b"macOS metadata")
    out = tmp_path / "metrics.json"
    result = _evaluate(copy, out, "--cases", case.name, case.name)  # named twice, counted once
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["counts"]["patients"] == 1
    assert report["counts"]["slices"] == len(list(case.glob("*_mask.TIF")))


def test_metrics_without_data_are_null_in_the_json():
    from training.evaluate import _json_safe

    report = {"segmentation": {"dice": float("nan")}, "curve": [1.0, float("inf")], "n": 3}
    assert json.loads(json.dumps(_json_safe(report), allow_nan=False)) == {
        "segmentation": {"dice": None},
        "curve": [1.0, None],
        "n": 3,
    }


#: A train-split and a validation-split patient of training/splits.json (20 slices each).
DEVELOPMENT_CASES = ("TCGA_CS_4943_20000902", "TCGA_CS_4942_19970222")


@pytest.mark.skipif(not models_available(), reason="shipped models not in models/")
def test_patients_the_models_were_trained_on_are_tagged_and_warned_about(lgg_dir, tmp_path):
    data = tmp_path / "lgg"
    subprocess.run(
        [sys.executable, str(RESTORE), str(data), "--only", *DEVELOPMENT_CASES],
        check=True,
        capture_output=True,
    )
    (data / "kaggle_3m" / CASES[0]).symlink_to(lgg_dir / "kaggle_3m" / CASES[0])
    out = tmp_path / "metrics.json"
    result = _evaluate(data, out, env=os.environ | {"BRAINLOC_INFERENCE_PRECISION": "float32"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    portions = {case["case"]: case["split"] for case in report["per_case"]}
    assert portions == {
        DEVELOPMENT_CASES[0]: "train",
        DEVELOPMENT_CASES[1]: "validation",
        CASES[0]: "test",
    }
    assert report["counts"]["patients"] == 3
    assert report["counts"]["by_split"] == {"train": 1, "validation": 1, "test": 1, "unseen": 0}
    warning = "2 of 3 patients were used to train the shipped models"
    assert result.stdout.startswith(f"warning: {warning}") and "optimistic" in result.stdout


def test_a_case_the_split_does_not_name_is_unseen():
    split = {"train": ["a"], "val": ["b"], "test": ["c"]}
    assert split_portions(["c", "a", "z", "b"], split) == {
        "c": "test",
        "a": "train",
        "z": "unseen",
        "b": "validation",
    }
    # The committed split names every development patient; another name is unseen.
    assert split_portions([CASES[0], "TCGA_XX_0000_20000101"]) == {
        CASES[0]: "test",
        "TCGA_XX_0000_20000101": "unseen",
    }
