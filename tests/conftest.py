"""Shared fixtures: an isolated data directory with a migrated database, and user factories.

``app_env`` points BRAINLOC_DATA_DIR at a temporary folder (so the settings, the engine and
the cookie key all live there), migrates it with Alembic and lowers the bcrypt cost so
account tests stay fast. ``make_account`` creates users through the same code as the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlmodel import Session

from brainloc.accounts import hash_password
from brainloc.settings import Settings, get_settings
from db.engine import get_engine
from db.migrate import upgrade_head
from db.models import User
from db.users import get_category_by_code, save_user

#: The password every factory-made account gets (it satisfies the policy).
TEST_PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def app_env(tmp_path, monkeypatch) -> Iterator[Settings]:
    """Settings for a fresh, migrated data directory under ``tmp_path``."""
    monkeypatch.setenv("BRAINLOC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BRAINLOC_BCRYPT_ROUNDS", "4")
    for name in ("DATABASE_URL", "BRAINLOC_COOKIE_KEY", "BRAINLOC_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade_head(settings.database_url)
    yield settings
    get_engine(settings.database_url).dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def db_session(app_env) -> Iterator[Session]:
    """A session on the ``app_env`` database; the test commits when it needs to."""
    with Session(get_engine(app_env.database_url), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def make_account(app_env) -> Callable[..., User]:
    """``make_account("alice", role=..., status=...)`` -> a committed user with
    ``TEST_PASSWORD``; practitioners get a category, licence and institution."""

    def factory(
        username: str, *, role: str = "practitioner", status: str = "approved", **fields
    ) -> User:
        with Session(get_engine(app_env.database_url), expire_on_commit=False) as session:
            category = get_category_by_code(session, code="radiologist")
            values = {
                "username": username,
                "full_name": f"Dr {username.title()}",
                "email": f"{username}@clinic.example",
                "password_hash": hash_password(TEST_PASSWORD),
                "role": role,
                "status": status,
                "category_id": category.id if role == "practitioner" else None,
                "licence_number": "GMC-1234567" if role == "practitioner" else "",
                "institution": "St Elsewhere Hospital" if role == "practitioner" else "",
            }
            values.update(fields)
            user = save_user(session, user=User(**values))
            session.commit()
            return user

    return factory
