"""Reading the Kaggle lgg-mri-segmentation layout and the patient-level split.

Layout (as downloaded from Kaggle, or rebuilt by ``../shared/lgg/restore.py``)::

    DIR/kaggle_3m/<case>/<case>_<n>.tif        256x256x3 uint8 (pre-contrast, FLAIR, post-contrast)
    DIR/kaggle_3m/<case>/<case>_<n>_mask.tif   256x256 uint8, 0 or 255

``DIR`` may also point at the ``kaggle_3m`` folder itself. The split is by
patient, never by slice: neighbouring slices of one patient are nearly
identical, so a slice split leaks test patients into training.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from brainloc.kaggle_layout import MASK_RE, layout_root, mask_path, scan_slices
from brainloc.scan_readers import tiff_page_pixels

log = logging.getLogger(__name__)

SPLITS_FILE = Path(__file__).resolve().parent / "splits.json"
REPO_ROOT = SPLITS_FILE.parent.parent
#: The seed of the committed split (also written into splits.json) and of its folds.
SPLIT_SEED = 20261125


@dataclass
class CaseSlices:
    """All slices of one patient, ordered by slice number.

    images: (N, 256, 256, 3) uint8; masks: (N, 256, 256) bool.
    """

    case: str
    patient: str
    images: np.ndarray
    masks: np.ndarray
    files: list[Path]


def patient_id(case: str) -> str:
    """``TCGA_CS_4941_19960909`` -> ``TCGA_CS_4941`` (a patient may have several cases)."""
    return "_".join(case.split("_")[:3])


def find_root(data_dir: Path | str) -> Path:
    """Return the folder holding the case folders (see ``brainloc.kaggle_layout``)."""
    root = layout_root(data_dir)
    if root.is_dir() and any(_has_masks(case) for case in root.iterdir() if case.is_dir()):
        return root
    raise FileNotFoundError(
        f"{data_dir} does not look like the Kaggle lgg-mri-segmentation layout "
        "(expected <case>/<case>_<n>.tif with <case>_<n>_mask.tif beside it)"
    )


def list_cases(data_dir: Path | str) -> list[str]:
    """Case folder names under the layout root, sorted."""
    root = find_root(data_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _has_masks(p))


def _has_masks(case_dir: Path) -> bool:
    """A case folder: it holds ``*_mask.tif`` files (any case, ``.tiff`` too)."""
    return any(MASK_RE.search(path.name) for path in case_dir.iterdir())


def slice_files(case_dir: Path) -> list[tuple[int, Path, Path]]:
    """(slice number, image path, mask path) for every slice of a case, in slice order."""
    rows = []
    for number, image in scan_slices(case_dir):
        mask = mask_path(image)
        if not mask.is_file():
            raise FileNotFoundError(f"{image} has no mask {mask.name}")
        rows.append((number, image, mask))
    return rows


def load_case(data_dir: Path | str, case: str) -> CaseSlices:
    """Read every slice and mask of one case."""
    case_dir = find_root(data_dir) / case
    rows = slice_files(case_dir)
    if not rows:
        raise FileNotFoundError(f"no slices in {case_dir}")
    images = [_read_tiff(image) for _, image, _ in rows]
    # A mask saved in colour (or with an alpha channel) marks tumor wherever any channel does.
    masks = [_read_tiff(mask) for _, _, mask in rows]
    masks = [_single_channel(mask) for mask in masks]
    for (_, image_path, mask_path_), image, mask in zip(rows, images, masks, strict=True):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{image_path}: expected a uint8 (H, W, 3) slice, got {image.shape} {image.dtype}"
            )
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{mask_path_}: expected a single-channel mask of {image.shape[1]} x "
                f"{image.shape[0]} pixels like its slice, got {mask.shape}"
            )
        if image.shape != images[0].shape:
            raise ValueError(
                f"{image_path}: {image.shape[1]} x {image.shape[0]} pixels, but the case's first "
                f"slice {rows[0][1].name} is {images[0].shape[1]} x {images[0].shape[0]}"
            )
    return CaseSlices(
        case,
        patient_id(case),
        np.stack(images),
        np.stack(masks) > 0,
        [image for _, image, _ in rows],
    )


def _single_channel(mask: np.ndarray) -> np.ndarray:
    """A mask saved in colour marks tumor wherever a colour channel does; an alpha channel
    (grey + alpha, RGBA) is left out, since an opaque one would mark every pixel."""
    if mask.ndim != 3:
        return mask
    colours = mask[..., :1] if mask.shape[-1] == 2 else mask[..., :3]
    return colours.max(axis=-1)


def _read_tiff(path: Path) -> np.ndarray:
    """One single-page TIFF file's pixels as the app's upload reader shows them
    (:func:`brainloc.scan_readers.tiff_page_pixels`: Orientation tag, palette, min-is-white),
    so that a model trains and is evaluated on the pixels it is given in the app; an unreadable
    file is named in the error."""
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if pages == 1:
                return tiff_page_pixels(tif.pages[0])
    except Exception as exc:  # noqa: BLE001 - any decoder failure (zlib, LZW …) names the file
        raise ValueError(f"{path}: cannot be read as a TIFF image ({exc})") from exc
    raise ValueError(f"{path}: holds {pages} pages; a slice or mask is one page")


def load_cases(data_dir: Path | str, cases: list[str]) -> list[CaseSlices]:
    """Read several cases; logs progress because the full set takes a while."""
    loaded = []
    for number, case in enumerate(cases, 1):
        loaded.append(load_case(data_dir, case))
        if number % 10 == 0 or number == len(cases):
            log.info("read %d/%d cases", number, len(cases))
    return loaded


def make_split(
    cases: list[str], seed: int = SPLIT_SEED, val_fraction: float = 0.1, test_fraction: float = 0.15
) -> dict[str, list[str]]:
    """Split case names by patient into train/val/test with a fixed seed."""
    patients = sorted({patient_id(c) for c in cases})
    random.Random(seed).shuffle(patients)
    n_test = max(1, round(len(patients) * test_fraction))
    n_val = max(1, round(len(patients) * val_fraction))
    groups = {
        "test": set(patients[:n_test]),
        "val": set(patients[n_test : n_test + n_val]),
        "train": set(patients[n_test + n_val :]),
    }
    return {
        name: sorted(c for c in cases if patient_id(c) in members)
        for name, members in groups.items()
    }


def read_split(path: Path = SPLITS_FILE) -> dict[str, list[str]]:
    """The committed split: {"train": [...], "val": [...], "test": [...], "seed": ...}."""
    split = json.loads(Path(path).read_text(encoding="utf-8"))
    for name in ("train", "val", "test"):
        if name not in split:
            raise ValueError(f"{path} has no {name!r} list")
    return split


def split_file_label(path: Path | str) -> str:
    """How run records and model metadata name a split file: relative to the repository
    when it lies inside it (``training/splits.json`` on every machine), else as given."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def stack(cases: list[CaseSlices]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate cases into (images (N,256,256,3) uint8, masks (N,256,256) bool)."""
    return np.concatenate([c.images for c in cases]), np.concatenate([c.masks for c in cases])


def patient_folds(cases: list[str], folds: int, seed: int = SPLIT_SEED) -> list[list[str]]:
    """Split case names into ``folds`` groups by patient (cross-validation), with a fixed seed.

    A patient's cases always share a fold, so no fold ever validates on a patient
    it trained on.
    """
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    patients = sorted({patient_id(c) for c in cases})
    if folds > len(patients):
        raise ValueError(f"{folds} folds need at least {folds} patients, got {len(patients)}")
    random.Random(seed).shuffle(patients)
    fold_of = {patient: index % folds for index, patient in enumerate(patients)}
    return [sorted(c for c in cases if fold_of[patient_id(c)] == k) for k in range(folds)]


def held_out_fold(split: dict, folds: int, fold: int) -> list[str]:
    """The train+val cases that cross-validation fold ``fold`` (of ``folds``) validates on."""
    pool = split["train"] + split["val"]
    return patient_folds(pool, folds, seed=split.get("seed", SPLIT_SEED))[fold]
