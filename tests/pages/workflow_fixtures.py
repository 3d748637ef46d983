"""Fixtures for the clinical pages' AppTests: tiny deterministic models, two practitioners,
stored analyses and a signed-in AppTest.

The tiny models (``tests/brainloc/conftest.py``) call a slice "tumor" when its post-contrast
channel has a bright patch and mark the bright FLAIR pixels, so the pages run the real
pipeline with answers known in advance. Import the fixtures into a test module with
``from tests.pages.workflow_fixtures import *``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from brainloc.casework import analyze_uploads, save_outcome
from brainloc.settings import get_settings
from db.engine import get_engine
from tests.brainloc.conftest import build_tiny_models
from tests.brainloc.scan_factory import encode_pil, synthetic_slice, tumor_like_slice
from ui.state import USER_ID_KEY

__all__ = ["tiny_models", "clinic", "Clinic", "open_page", "tumor_png", "clear_png"]

TIMEOUT = 60
REPO_ROOT = Path(__file__).resolve().parents[2]


def tumor_png(size: int = 96) -> bytes:
    """A synthetic slice the tiny models call tumor (bright square in FLAIR and post-contrast)."""
    side = size // 4
    return encode_pil(tumor_like_slice((size, size), square=(size // 3, size // 4, side)), "PNG")


def clear_png(size: int = 96) -> bytes:
    """A synthetic slice without a bright patch: the tiny models call it clear."""
    return encode_pil(synthetic_slice((size, size), seed=3), "PNG")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("page_models"))


@dataclass
class Clinic:
    """Two approved practitioners on a fresh database, with the tiny models installed."""

    alice: int
    bob: int
    settings: object

    def add_analysis(self, owner_id: int, reference: str, png: bytes | None = None) -> int:
        """Store an analysis of one slice for ``owner_id`` the way the analyze page does."""
        from brainloc.inference import get_pipeline

        pipeline = get_pipeline(self.settings.models_dir)
        outcome = analyze_uploads(pipeline, [("slice.png", png or tumor_png())])
        with Session(get_engine(self.settings.database_url)) as session:
            analysis_id = save_outcome(
                session, owner_id=owner_id, case_reference=reference, outcome=outcome
            )
            session.commit()
        return analysis_id


@pytest.fixture
def clinic(app_env, make_account, tiny_models, monkeypatch) -> Clinic:
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(tiny_models))
    get_settings.cache_clear()
    alice = make_account("alice")
    bob = make_account("bob")
    return Clinic(alice=alice.id, bob=bob.id, settings=get_settings())


def open_page(path: str, user_id: int | None, query: dict | None = None) -> AppTest:
    """Run app.py with ``user_id`` signed in (None: signed out), then switch to
    ``pages/<path>`` the way the navigation does; returns the AppTest after that run."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    if user_id is not None:
        at.session_state[USER_ID_KEY] = user_id
    at.run()
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.switch_page(f"pages/{path}").run()
