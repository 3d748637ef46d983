"""The container recipe (``Dockerfile``, ``.dockerignore``) against the code it packages.

No container engine runs where the tests run, so the image itself is built and tried by hand
(README, "Running in a container"). These tests keep the recipe true as the code changes: the
image must carry every part of the repository that the app imports, run as an unprivileged
user and keep secrets and patient data out of the build context.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copied() -> set[str]:
    """The repository paths the Dockerfile copies into the image."""
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(w.rstrip("/") for w in words[1:-1])
    return copied


def _in_build_context(path: str) -> bool:
    """Whether ``.dockerignore`` lets ``path`` into the build context (last match wins)."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, f"**/{pattern}") for p in prefixes
        ):
            included = negated
    return included


def _local_imports(files: list[Path]) -> set[str]:
    """Top-level names imported by ``files`` that are packages or modules of this repository."""
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if (ROOT / n).is_dir() or (ROOT / f"{n}.py").is_file()}


def test_the_image_carries_every_local_package_the_app_imports():
    copied = _copied()
    assert {"app.py", "models", "requirements.txt"} <= copied
    files = [ROOT / "app.py"]
    for name in sorted(copied):
        if (ROOT / name).is_dir():
            files += sorted((ROOT / name).rglob("*.py"))
    needed = _local_imports(files) | {"pages"}  # Streamlit runs pages/ by path
    assert needed <= copied, f"imported but not in the image: {sorted(needed - copied)}"
    assert {"training", "tests"}.isdisjoint(needed)  # the app runs without them
    for name in copied:
        assert _in_build_context(name), f"{name} is copied but .dockerignore keeps it out"


def test_secrets_and_patient_data_stay_out_and_the_app_runs_unprivileged():
    for path in (
        ".streamlit/secrets.toml",
        "data/cookie_key",
        "data/brainloc.db",
        ".venv/bin",
        ".devdata/trainval128.xz",
        "training/runs/x/best.keras",
        "brainloc/__pycache__",
    ):
        assert not _in_build_context(path), path
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [words[1] for words in lines if words[:1] == ["USER"]]
    assert users and users[-1] not in ("root", "0")
    # Everything the app writes goes to the data volume, named by the app's own setting.
    assert any("BRAINLOC_DATA_DIR=/data" in words for words in lines)
    assert ["VOLUME", '["/data"]'] in lines
