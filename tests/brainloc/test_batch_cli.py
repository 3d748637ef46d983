"""``python -m brainloc analyze``: output lines, pictures and exit codes (tiny models)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from brainloc.cli import main
from tests.brainloc.conftest import REPO_ROOT
from tests.brainloc.scan_factory import encode_tiff, synthetic_slice, tumor_like_slice


@pytest.fixture
def kaggle_dir(tmp_path):
    """A folder in the Kaggle layout: slices 1, 2 and 10 (2 has a tumor), masks and data.csv."""
    case = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    case.mkdir(parents=True)
    for number in (1, 2, 10):
        image = tumor_like_slice(seed=number) if number == 2 else synthetic_slice(seed=number)
        (case / f"TCGA_XX_0001_20000101_{number}.tif").write_bytes(encode_tiff(image))
        mask = np.zeros((256, 256), np.uint8)
        (case / f"TCGA_XX_0001_20000101_{number}_mask.tif").write_bytes(encode_tiff(mask))
    (tmp_path / "kaggle_3m" / "data.csv").write_text("Patient\nTCGA_XX_0001\n")
    return tmp_path / "kaggle_3m"


def _analyze(capsys, *args):
    code = main(["analyze", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_kaggle_folder_is_walked_in_natural_order_skipping_masks(
    kaggle_dir, tiny_models_dir, capsys
):
    code, out, err = _analyze(capsys, kaggle_dir, "--json", "--models-dir", tiny_models_dir)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"].rsplit("_", 1)[-1] for r in records] == ["1.tif", "2.tif", "10.tif"]
    assert [r["has_tumor"] for r in records] == [False, True, False]
    assert all(r["slice"] == 0 for r in records)
    for record in records:
        assert {"file", "slice", "tumor_probability", "has_tumor", "tumor_area_px"} <= set(record)
        assert 0.0 <= record["tumor_probability"] <= 1.0
    assert records[1]["tumor_area_px"] > 1000 and records[0]["tumor_area_px"] == 0


def test_bad_file_is_reported_and_the_rest_still_run(kaggle_dir, tiny_models_dir, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    good = next(kaggle_dir.rglob("*_2.tif"))
    code, out, err = _analyze(capsys, bad, good, "--models-dir", tiny_models_dir)
    assert code == 2
    assert err.strip() == f"error: {bad}: not a valid PNG file; it is a text file, not an image"
    assert re.fullmatch(
        rf"{re.escape(str(good))}: TUMOR, probability [<>]?\d+\.\d%, area \d+ px, "
        r"diameters \d+ × \d+ px",
        out.strip(),
    )


def test_a_damaged_dicom_in_a_folder_is_named_and_the_rest_still_run(
    kaggle_dir, tiny_models_dir, tmp_path, capsys
):
    from tests.brainloc.test_scan_errors import _damaged_spacing, _grey_dicom

    series = tmp_path / "series"
    series.mkdir()
    (series / "IM1").write_bytes(_damaged_spacing(_grey_dicom(0)))  # its spacing is the series'
    (series / "IM2").write_bytes(_grey_dicom(5))
    good = next(kaggle_dir.rglob("*_2.tif"))
    code, out, err = _analyze(capsys, series, good, "--models-dir", tiny_models_dir)
    assert code == 2
    # The folder's error line says which of its files failed.
    failed = "DICOM series of IM1 (2 files): the file is truncated or corrupt and cannot be read"
    assert err.strip() == f"error: {series}: {failed}"
    assert out.startswith(f"{good}: TUMOR")


def test_empty_folder_is_an_error(tmp_path, tiny_models_dir, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no scans here")
    code, out, err = _analyze(capsys, tmp_path / "empty", "--models-dir", tiny_models_dir)
    assert code == 2 and out == ""
    assert err.strip() == f"error: {tmp_path / 'empty'}: no scan files found in this folder"


def test_an_empty_folder_before_other_folders_is_reported_in_order(
    kaggle_dir, tiny_models_dir, tmp_path, capsys
):
    from tests.brainloc.scan_factory import encode_dicom

    empty = tmp_path / "empty"
    empty.mkdir()
    series = tmp_path / "series"
    series.mkdir()
    for z in (0.0, 1.0):
        pixels = synthetic_slice(seed=int(z))[..., 1].astype(np.uint16) * 16
        (series / f"IM{int(z)}.dcm").write_bytes(encode_dicom(pixels, position_z=z))
    code, out, err = _analyze(
        capsys, empty, series, kaggle_dir, empty, "--json", "--models-dir", tiny_models_dir
    )
    assert code == 2
    message = f"error: {empty}: no scan files found in this folder"
    assert err.splitlines() == [message, message]
    files = [json.loads(line)["file"] for line in out.splitlines()]
    assert files[:2] == [str(series)] * 2 and len(files) == 5


def test_out_writes_overlay_and_mask_pngs(kaggle_dir, tiny_models_dir, tmp_path, capsys):
    out_dir = tmp_path / "pictures"
    good = next(kaggle_dir.rglob("*_2.tif"))
    code, out, _ = _analyze(
        capsys, good, "--json", "--out", out_dir, "--models-dir", tiny_models_dir
    )
    assert code == 0
    record = json.loads(out)
    mask = np.asarray(Image.open(record["mask_png"]))
    overlay = np.asarray(Image.open(record["overlay_png"]))
    assert set(np.unique(mask)) == {0, 255}
    assert (mask == 255).sum() == record["tumor_area_px"]
    assert overlay.shape == (256, 256, 3)
    red = (overlay[..., 0] > overlay[..., 1] + 50) & (mask == 255)
    assert red.sum() > 0.9 * record["tumor_area_px"]


def test_out_that_cannot_be_a_folder_is_refused_before_anything_runs(kaggle_dir, tmp_path, capsys):
    good = next(kaggle_dir.rglob("*_2.tif"))
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    missing_models = tmp_path / "no-models"  # models would be exit 1: --out is checked first
    code, out, err = _analyze(capsys, good, "--out", a_file, "--models-dir", missing_models)
    assert (code, out) == (2, "")
    assert err.strip() == f"error: --out {a_file}: it is a file, not a folder"
    assert a_file.read_text() == "keep me"
    below = a_file / "pictures"
    code, out, err = _analyze(capsys, good, "--out", below, "--models-dir", missing_models)
    assert (code, out) == (2, "")
    assert err.strip() == f"error: --out {below}: cannot write there (Not a directory)"


def test_out_never_overwrites_a_file(tiny_models_dir, tmp_path, capsys):
    folder = tmp_path / "cases"
    folder.mkdir()
    for number in (2, 10):
        Image.fromarray(tumor_like_slice(seed=number)).save(folder / f"case_{number}.png")
    truth = folder / "case_10_mask.png"  # the ground truth beside its scan
    truth.write_bytes(b"ground truth")
    before = sorted(folder.iterdir())
    args = ["--out", folder, "--models-dir", tiny_models_dir]
    code, out, err = _analyze(capsys, folder, *args)
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"error: --out {folder}: case_10_mask.png already exists and is not overwritten "
        "(choose another folder)"
    )
    assert sorted(folder.iterdir()) == before and truth.read_bytes() == b"ground truth"
    # Names met only at write time are refused there too: a three-page x.tif writes
    # x_s001_*.png, which a file named x_s001.tif would write again.
    pages = np.stack([synthetic_slice(seed=0), tumor_like_slice(seed=1), synthetic_slice(seed=2)])
    (tmp_path / "x.tif").write_bytes(encode_tiff(pages))
    (tmp_path / "x_s001.tif").write_bytes(encode_tiff(synthetic_slice(seed=3)))
    out_dir = tmp_path / "pictures"
    code, out, err = _analyze(
        capsys, tmp_path / "x.tif", tmp_path / "x_s001.tif", "--out", out_dir, "--json",
        "--models-dir", tiny_models_dir,
    )  # fmt: skip
    assert code == 2 and len(out.splitlines()) == 3
    assert err.strip() == (
        f"error: --out {out_dir}: x_s001_overlay.png already exists and is not overwritten "
        "(choose another folder)"
    )
    overlay = np.asarray(Image.open(out_dir / "x_s001_overlay.png"))
    assert (overlay[..., 0] > overlay[..., 1] + 50).any()  # still the tumor slice's picture


def test_multi_page_tiff_gives_one_line_per_slice(tiny_models_dir, tmp_path, capsys):
    pages = np.stack([synthetic_slice(seed=0), tumor_like_slice(seed=1), synthetic_slice(seed=2)])
    path = tmp_path / "case.tif"
    path.write_bytes(encode_tiff(pages))
    code, out, _ = _analyze(
        capsys, path, "--json", "--out", tmp_path / "o", "--models-dir", tiny_models_dir
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["slice"] for r in records] == [0, 1, 2]
    assert [r["has_tumor"] for r in records] == [False, True, False]
    assert (tmp_path / "o" / "case_s001_overlay.png").is_file()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BRAINLOC_MAX_SLICES", "abc", "BRAINLOC_MAX_SLICES must be a number, got 'abc'"),
        ("BRAINLOC_MAX_IMAGE_PIXELS", "5", "BRAINLOC_MAX_IMAGE_PIXELS must be between"),
        ("BRAINLOC_MAX_UPLOAD_PIXELS", "5", "BRAINLOC_MAX_UPLOAD_PIXELS must be between"),
        ("BRAINLOC_INFERENCE_PRECISION", "fp8", "BRAINLOC_INFERENCE_PRECISION must be one of"),
    ],
)
def test_a_wrong_setting_is_reported_as_itself(
    kaggle_dir, tiny_models_dir, tmp_path, capsys, monkeypatch, name, value, message
):
    monkeypatch.setenv(name, value)
    good = next(kaggle_dir.rglob("*_2.tif"))
    for args in ([good], ["--sequences", good, good, good]):
        code, out, err = _analyze(
            capsys, *args, "--out", tmp_path / "o", "--models-dir", tiny_models_dir
        )
        assert (code, out) == (2, "")
        assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_models_exit_1(kaggle_dir, tmp_path, capsys):
    code, out, err = _analyze(capsys, kaggle_dir, "--models-dir", tmp_path / "empty")
    assert code == 1
    assert err.startswith("error: models:") and out == ""


def test_module_entry_point_exit_code_for_bad_input(tmp_path):
    bad = tmp_path / "empty.tif"
    bad.write_bytes(b"")
    process = subprocess.run(
        [sys.executable, "-m", "brainloc", "analyze", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    assert process.stderr.strip().endswith(f"error: {bad}: the file is empty")
    assert "Traceback" not in process.stderr


def test_dicom_folder_is_one_series_in_position_order(tiny_models_dir, tmp_path, capsys):
    from tests.brainloc.scan_factory import encode_dicom

    series = tmp_path / "series"
    series.mkdir()
    # File names run against the slice positions; only the tumor slice (z = 5) is bright.
    for name, z in (("IM1.dcm", 10.0), ("IM2.dcm", 0.0), ("IM3.dcm", 5.0)):
        image = tumor_like_slice(seed=int(z)) if z == 5.0 else synthetic_slice(seed=int(z))
        pixels = image[..., 1].astype(np.uint16) * 16
        (series / name).write_bytes(encode_dicom(pixels, position_z=z, spacing=(0.5, 0.5)))
    code, out, err = _analyze(capsys, series, "--json", "--models-dir", tiny_models_dir)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["slice_name"] for r in records] == ["IM2.dcm", "IM3.dcm", "IM1.dcm"]
    assert [r["slice"] for r in records] == [0, 1, 2]
    assert all(r["file"] == str(series) for r in records)
    assert [r["has_tumor"] for r in records] == [False, True, False]
    assert records[1]["tumor_area_mm2"] == pytest.approx(records[1]["tumor_area_px"] * 0.25)
    # Diameters in mm on the 0.5 mm pixels; none on the slices without tumor.
    diameters = records[1]["diameters"]
    assert diameters["unit"] == "mm" and diameters["longest"] >= diameters["perpendicular"] > 0
    assert records[0]["diameters"] is None
    # Every line says which models, in which arithmetic, produced it.
    assert records[0]["models"]["classifier"] == "tiny-classifier v0.0.1"
    assert records[0]["arithmetic"] in ("float32", "bfloat16")
    # A PACS export names its files without extensions and adds a DICOMDIR: the same series.
    for path in list(series.iterdir()):
        path.rename(path.with_name(f"IM000{path.stem[-1]}"))
    (series / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    code, out, err = _analyze(capsys, series, "--json", "--models-dir", tiny_models_dir)
    assert code == 0, err
    unnamed = [json.loads(line) for line in out.splitlines()]
    assert [r["slice_name"] for r in unnamed] == ["IM0002", "IM0003", "IM0001"]
    assert [r["has_tumor"] for r in unnamed] == [False, True, False]


def test_the_numbered_slices_of_a_case_are_decided_as_one_volume(tmp_path, capsys):
    from tests.brainloc.conftest import build_tiny_models

    models = build_tiny_models(tmp_path / "models", extend_threshold=0.2)
    case = tmp_path / "kaggle_3m" / "CASE_V"
    case.mkdir(parents=True)
    faint = tumor_like_slice(seed=2)
    faint[100:148, 60:108, 2] = 117  # the tiny classifier's P is about 0.3
    images = {1: synthetic_slice(seed=1), 2: faint, 3: tumor_like_slice(seed=3), 4: faint}
    images[10] = faint
    for number, image in images.items():
        (case / f"CASE_V_{number}.tif").write_bytes(encode_tiff(image))
    code, out, err = _analyze(capsys, case, "--json", "--models-dir", models)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    names = [r["file"].rsplit("_", 1)[-1] for r in records]
    assert names == ["1.tif", "2.tif", "3.tif", "4.tif", "10.tif"]
    # Slices 2 and 4 continue slice 3's tumor; slice 10 is as faint, but slices 5-9 are
    # missing, so it is not a neighbour of slice 4.
    assert [r["has_tumor"] for r in records] == [False, True, True, True, False]
    assert records[1]["tumor_probability"] < 0.5 and records[1]["tumor_area_px"] > 0
    # Files named on the command line out of order: the same decisions, printed in that order.
    shuffled = [case / f"CASE_V_{n}.tif" for n in (3, 10, 1, 4, 2)]
    code, out, _ = _analyze(capsys, *shuffled, "--json", "--models-dir", models)
    decided = {r["file"]: r["has_tumor"] for r in map(json.loads, out.splitlines())}
    assert list(decided) == [str(path) for path in shuffled]
    assert [decided[str(case / f"CASE_V_{n}.tif")] for n in (1, 2, 3, 4, 10)] == [
        False, True, True, True, False,
    ]  # fmt: skip
    # One slice on its own is decided alone.
    code, out, _ = _analyze(capsys, case / "CASE_V_2.tif", "--json", "--models-dir", models)
    assert not json.loads(out)["has_tumor"]


def test_a_case_given_as_three_sequences_is_combined(tiny_models_dir, tmp_path, capsys):
    volume = np.stack([synthetic_slice(seed=1), tumor_like_slice(seed=2)])
    paths = []
    for channel, name in enumerate(("pre", "flair", "post")):
        path = tmp_path / f"{name}.tif"
        path.write_bytes(encode_tiff(np.ascontiguousarray(volume[..., channel])))
        paths.append(path)
    args = ["--json", "--models-dir", tiny_models_dir, "--out", tmp_path / "out"]
    code, out, err = _analyze(capsys, "--sequences", *paths, *args)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["has_tumor"] for r in records] == [False, True]
    # The same two slices as one colour file give the same answer.
    whole = tmp_path / "whole.tif"
    whole.write_bytes(encode_tiff(volume))
    code, out, _ = _analyze(capsys, whole, "--json", "--models-dir", tiny_models_dir)
    expected = [json.loads(line)["tumor_probability"] for line in out.splitlines()]
    assert [r["tumor_probability"] for r in records] == expected
    assert {r["file"] for r in records} == {str(paths[1])}  # named after the FLAIR series
    assert sorted(p.name for p in (tmp_path / "out").glob("*_overlay.png")) == [
        "flair_s000_overlay.png",
        "flair_s001_overlay.png",
    ]
    # A series of another length, or both kinds of input at once, is refused.
    paths[2].write_bytes(encode_tiff(np.ascontiguousarray(volume[:1, ..., 2])))
    code, out, err = _analyze(capsys, "--sequences", *paths, "--models-dir", tiny_models_dir)
    assert code == 2 and not out
    assert "post-contrast series has 1 slice(s) and FLAIR 2" in err
    code, _, err = _analyze(capsys, whole, "--sequences", *paths)
    assert code == 2 and "FILE_OR_DIR arguments or --sequences" in err
    # The FLAIR file given again as post-contrast is refused, not analysed as a full case.
    code, out, err = _analyze(
        capsys, "--sequences", paths[0], paths[1], paths[1], "--models-dir", tiny_models_dir
    )
    assert code == 2 and not out
    assert "FLAIR and post-contrast uploads are the same file(s)" in err


def test_a_zip_is_analysed_as_the_files_inside_it(tmp_path, capsys):
    import zipfile

    from tests.brainloc.conftest import build_tiny_models

    models = build_tiny_models(tmp_path / "models")
    images = {1: synthetic_slice(seed=1), 2: tumor_like_slice(seed=2)}
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        for number, image in images.items():
            archive.writestr(f"CASE_Z/CASE_Z_{number}.tif", encode_tiff(image))
    code, out, err = _analyze(capsys, tmp_path / "export.zip", "--json", "--models-dir", models)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["slice_name"] for r in records] == ["CASE_Z_1.tif", "CASE_Z_2.tif"]
    assert [r["has_tumor"] for r in records] == [False, True]
    # A ZIP without images is refused with its own message and exit code 2.
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("notes.txt", "nothing here")
    code, _, err = _analyze(capsys, tmp_path / "empty.zip", "--models-dir", models)
    assert code == 2 and "empty.zip: the ZIP archive holds no image files" in err


def test_a_study_zip_is_analysed_as_its_three_recognised_series(tmp_path, capsys):
    import zipfile

    from tests.brainloc.conftest import build_tiny_models
    from tests.brainloc.scan_factory import encode_study

    models = build_tiny_models(tmp_path / "models")
    stack = np.stack([synthetic_slice(seed=1), tumor_like_slice(seed=2)]).astype(np.uint16) * 16
    series = {"AX T1": stack[..., 0], "AX FLAIR": stack[..., 1], "AX T1 +C": stack[..., 2]}
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as archive:
        for name, data in encode_study(series | {"AX T2": stack[..., 1]}).items():
            archive.writestr(name, data)
    code, out, err = _analyze(capsys, tmp_path / "study.zip", "--json", "--models-dir", models)
    assert code == 0, err
    assert "note: " in err and "FLAIR 'AX FLAIR'" in err and "not analysed: 'AX T2'" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["has_tumor"] for r in records] == [False, True]  # two slices, not four series' eight
    # The same series given by hand (--sequences, a folder each) give the same answers.
    folders = []
    for description in series:
        folder = tmp_path / description.replace(" ", "_").replace("+", "plus")
        folder.mkdir()
        for name, data in encode_study({description: series[description]}).items():
            (folder / name.replace("/", "_")).write_bytes(data)
        folders.append(folder)
    code, out, err = _analyze(capsys, "--sequences", *folders, "--json", "--models-dir", models)
    assert code == 0, err
    by_hand = [json.loads(line)["tumor_probability"] for line in out.splitlines()]
    assert [r["tumor_probability"] for r in records] == by_hand


@pytest.mark.parametrize(
    ("names", "preamble"),
    [
        (["1.2.840.7.1", "1.2.840.7.2", "1.2.840.7.3"], True),  # named by their UID
        (["1.2.840.7.1", "1.2.840.7.2", "1.2.840.7.3"], False),
        (["IM0001", "IM0002", "IM0003"], False),  # a PACS export, without the preamble
    ],
)
def test_a_folder_of_dicom_files_named_like_a_pacs_export_is_one_series(tmp_path, names, preamble):
    """The folder rule is the upload's (brainloc.scans): DICOM files named by a UID, or with
    no extension and without the 128-byte preamble, are a series. The command skipped them
    all and reported the folder as holding no scan."""
    from brainloc.batch import collect_jobs
    from brainloc.scans import read_paths
    from tests.brainloc.scan_factory import encode_dicom

    series = tmp_path / "export"
    series.mkdir()
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    for k, name in enumerate(names):
        data = encode_dicom(pixels, position_z=5.0 * k, instance=k + 1, preamble=preamble)
        (series / name).write_bytes(data)
    (series / "notes.1").write_bytes(b"not a scan, but named like one")
    (jobs,) = collect_jobs([series])
    assert [path.name for path in jobs.paths] == names
    assert [scan.n_slices for scan in read_paths(jobs.paths)] == [3]
