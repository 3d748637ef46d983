"""Where slices lie in the Kaggle lgg-mri-segmentation layout.

    DIR/kaggle_3m/<case>/<case>_<n>.tif         (also DIR/lgg-mri-segmentation/kaggle_3m, or DIR)
    DIR/kaggle_3m/<case>/<case>_<n>_mask.tif

Training (``training.data``) and the demo import (``brainloc.demo``) both walk
this layout; this module is the one place that knows it. It only finds paths;
reading pixels is the caller's business.
"""

from __future__ import annotations

import re
from pathlib import Path

#: A scan slice file, ``<case>_<n>.tif`` or ``.tiff``; masks (``<case>_<n>_mask.tif``) never match.
SLICE_RE = re.compile(r"^(?P<case>.+)_(?P<index>\d+)\.tiff?$", re.IGNORECASE)
#: A slice's mask file (``<case>_<n>_mask.tif``).
MASK_RE = re.compile(r"_\d+_mask\.tiff?$", re.IGNORECASE)


def layout_root(data_dir: Path | str) -> Path:
    """The folder holding the case folders: ``DIR/kaggle_3m``, the Kaggle download's
    ``DIR/lgg-mri-segmentation/kaggle_3m``, or ``DIR`` itself."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / "kaggle_3m", data_dir / "lgg-mri-segmentation" / "kaggle_3m"):
        if candidate.is_dir():
            return candidate
    return data_dir


def scan_slices(case_dir: Path) -> list[tuple[int, Path]]:
    """(slice number, path) of every scan slice in a case folder, in numeric order
    (``_2`` before ``_10``); mask files and hidden files are left out."""
    rows = []
    for path in case_dir.iterdir():
        match = SLICE_RE.match(path.name)
        # Names starting with a dot are other programs' files (macOS writes "._<name>").
        if match and path.is_file() and not path.name.startswith("."):
            rows.append((int(match["index"]), path))
    return sorted(rows)


def consecutive_runs(numbers: list[int]) -> list[list[int]]:
    """Positions in ``numbers`` grouped into runs of consecutive slice numbers, each run in
    number order: ``[3, 1, 2, 10]`` gives ``[[1, 2, 0], [3]]`` (slices 1-3, then slice 10).
    Slices are neighbours in the volume only within a run."""
    runs: list[list[int]] = []
    previous = None
    for position in sorted(range(len(numbers)), key=lambda k: numbers[k]):
        if previous is None or numbers[position] != previous + 1:
            runs.append([])
        runs[-1].append(position)
        previous = numbers[position]
    return runs


def mask_path(slice_path: Path) -> Path:
    """Where the ground-truth mask of a slice lies (it may not exist)."""
    return slice_path.with_name(f"{slice_path.stem}_mask{slice_path.suffix}")
