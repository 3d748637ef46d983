"""The Kaggle-layout reader and the patient-level split."""

import numpy as np
import pytest

from training.data import (
    SPLITS_FILE,
    find_root,
    list_cases,
    load_case,
    make_split,
    patient_id,
    read_split,
    split_file_label,
)

from .conftest import CASES


def test_reader_finds_cases_and_loads_aligned_slices(lgg_dir):
    assert find_root(lgg_dir) == lgg_dir / "kaggle_3m"
    assert list_cases(lgg_dir) == sorted(CASES)
    case = load_case(lgg_dir, CASES[0])
    assert case.images.dtype == np.uint8 and case.images.shape[1:] == (256, 256, 3)
    assert case.masks.dtype == bool and case.masks.shape == case.images.shape[:3]
    assert len(case.files) == len(case.images) == 20
    # Slices are in numeric order (…_2 before …_10), not in file-name order.
    numbers = [int(path.stem.rsplit("_", 1)[1]) for path in case.files]
    assert numbers == sorted(numbers) and numbers[0] == 1
    assert case.masks.any() and not case.masks.all()


def test_reader_rejects_a_folder_that_is_not_the_layout(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "x.tif").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="Kaggle"):
        list_cases(tmp_path)


def test_split_is_by_patient_and_deterministic():
    cases = [f"TCGA_AA_{n:04d}_2000010{n % 2}" for n in range(40)] + ["TCGA_AA_0001_19990101"]
    split = make_split(cases, seed=7)
    assert split == make_split(cases, seed=7)
    groups = {name: {patient_id(c) for c in split[name]} for name in ("train", "val", "test")}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"])
    assert not groups["val"] & groups["test"]
    # Both cases of patient 0001 land in the same portion.
    holder = [name for name in groups if "TCGA_AA_0001" in groups[name]]
    assert len(holder) == 1
    assert sum(len(v) for v in split.values()) == len(cases)


def test_committed_split_covers_the_development_patients_once():
    split = read_split()
    portions = [set(split[name]) for name in ("train", "val", "test")]
    assert sum(len(p) for p in portions) == 88
    patients = [{patient_id(c) for c in p} for p in portions]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert len(split["test"]) >= 10


def test_split_file_is_recorded_relative_to_the_repository_when_inside_it(tmp_path):
    assert split_file_label(SPLITS_FILE) == "training/splits.json"
    # The same file reached another way (as a device's copy of the repository records it).
    assert split_file_label(SPLITS_FILE.parent / ".." / "training" / "splits.json") == (
        "training/splits.json"
    )
    outside = tmp_path / "my-split.json"
    assert split_file_label(outside) == str(outside)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_a_mask_in_colour_or_with_alpha_marks_only_its_lesion(tmp_path, channels):
    import tifffile

    case = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    case.mkdir(parents=True)
    tifffile.imwrite(case / "TCGA_XX_0001_20000101_1.tif", np.full((8, 8, 3), 90, np.uint8))
    mask = np.zeros((8, 8, channels), np.uint8)
    mask[2:4, 2:4, 0] = 255  # the lesion, in the first (red or grey) channel
    if channels in (2, 4):
        mask[..., -1] = 255  # an opaque alpha channel
    # Grey + alpha is one page of two samples per pixel (tifffile would store a plain
    # (8, 8, 2) array as eight pages of 8 x 2 pixels).
    grey_alpha = {"photometric": "minisblack", "extrasamples": ["unassalpha"]}
    tifffile.imwrite(
        case / "TCGA_XX_0001_20000101_1_mask.tif",
        mask.squeeze(),
        **(grey_alpha if channels == 2 else {}),
    )
    loaded = load_case(tmp_path, "TCGA_XX_0001_20000101")
    assert loaded.masks.shape == (1, 8, 8) and int(loaded.masks.sum()) == 4


def test_slices_and_masks_are_read_as_the_app_shows_them(tmp_path):
    """A slice and its mask stored turned (TIFF Orientation 6, "right top") are read turned
    back, exactly as the upload reader shows the same file, so training and evaluation see
    what the app analyses."""
    import tifffile

    from brainloc.scan_readers import read_tiff

    case = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    case.mkdir(parents=True)
    stored = (np.arange(48 * 40 * 3) % 251).astype(np.uint8).reshape(48, 40, 3)
    mask = np.zeros((48, 40), np.uint8)
    mask[0, :2] = 255  # the top left corner as stored
    turned = [(274, "H", 1, 6, True)]
    tifffile.imwrite(case / "TCGA_XX_0001_20000101_1.tif", stored, extratags=turned)
    tifffile.imwrite(case / "TCGA_XX_0001_20000101_1_mask.tif", mask, extratags=turned)
    loaded = load_case(tmp_path, "TCGA_XX_0001_20000101")
    assert loaded.images.shape == (1, 40, 48, 3)
    np.testing.assert_array_equal(loaded.images[0], np.rot90(stored, -1))
    np.testing.assert_array_equal(loaded.masks[0], np.rot90(mask, -1) > 0)
    assert loaded.masks[0, :2, -1].all() and loaded.masks.sum() == 2  # now at the top right
    shown = read_tiff((case / "TCGA_XX_0001_20000101_1.tif").read_bytes(), "slice")
    np.testing.assert_array_equal(loaded.images[0], shown.slices[0])


def test_a_multi_page_slice_file_is_refused_by_name(tmp_path):
    import tifffile

    case = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    case.mkdir(parents=True)
    tifffile.imwrite(case / "TCGA_XX_0001_20000101_1.tif", np.zeros((2, 8, 8, 3), np.uint8))
    tifffile.imwrite(case / "TCGA_XX_0001_20000101_1_mask.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"_1\.tif: holds 2 pages; a slice or mask is one page"):
        load_case(tmp_path, "TCGA_XX_0001_20000101")
