"""Fixtures for training tests: a few LGG cases restored from ../shared/lgg into a temp dir."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESTORE = REPO.parent / "shared" / "lgg" / "restore.py"
#: Two small test-split patients (20 and 24 slices), both with tumor.
CASES = ("TCGA_CS_4944_20010208", "TCGA_CS_6665_20010817")


@pytest.fixture(scope="session")
def lgg_dir(tmp_path_factory) -> Path:
    """A Kaggle-layout directory holding the two CASES."""
    if not RESTORE.is_file():
        pytest.skip(f"dataset restore script not found at {RESTORE}")
    out = tmp_path_factory.mktemp("lgg")
    subprocess.run(
        [sys.executable, str(RESTORE), str(out), "--only", *CASES],
        check=True,
        capture_output=True,
    )
    return out
