"""Finding slices in the Kaggle layout, without reading any pixels."""

from brainloc.kaggle_layout import layout_root, mask_path, scan_slices


def test_layout_root_accepts_the_download_and_the_restored_layout(tmp_path):
    assert layout_root(tmp_path) == tmp_path
    nested = tmp_path / "lgg-mri-segmentation" / "kaggle_3m"
    nested.mkdir(parents=True)
    assert layout_root(tmp_path) == nested
    (tmp_path / "kaggle_3m").mkdir()
    assert layout_root(tmp_path) == tmp_path / "kaggle_3m"


def test_scan_slices_are_numeric_order_without_masks(tmp_path):
    for name in ("C_10.tif", "C_2.TIFF", "C_1.tif", "C_1_mask.tif", "notes.txt", "C_x.tif"):
        (tmp_path / name).write_bytes(b"")
    assert [(n, p.name) for n, p in scan_slices(tmp_path)] == [
        (1, "C_1.tif"),
        (2, "C_2.TIFF"),
        (10, "C_10.tif"),
    ]
    assert mask_path(tmp_path / "C_1.tif") == tmp_path / "C_1_mask.tif"


def test_consecutive_runs_split_at_missing_slice_numbers():
    from brainloc.kaggle_layout import consecutive_runs

    assert consecutive_runs([3, 1, 2, 10]) == [[1, 2, 0], [3]]
    assert consecutive_runs([5]) == [[0]]
    assert consecutive_runs([]) == []
    assert consecutive_runs([4, 2]) == [[1], [0]]
