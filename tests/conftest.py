"""Shared fixtures: an isolated data directory with a migrated database, and user factories.

``app_env`` points BRAINLOC_DATA_DIR at a temporary folder (so the settings, the engine and
the cookie key all live there), migrates it with Alembic and lowers the bcrypt cost so
account tests stay fast. ``make_account`` creates users through the same code as the app.

Every test that uses ``app_env`` or ``empty_database_url`` (directly or through another
fixture) runs twice: ``[sqlite]``, on a SQLite file in the data directory, and
``[postgresql]``, on a database of its own on a private PostgreSQL server
(``tests/databases.py``; ``DATABASE_URL`` points there). A test of something only SQLite has
(its file, WAL, the file backup) is marked ``sqlite_only``; one of what only a server does,
``postgresql_only``.
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
from tests.databases import PostgresServer, server_programs

#: The password every factory-made account gets (it satisfies the policy).
TEST_PASSWORD = "correct-horse-battery-9"


#: The databases every database test runs on (``database_backend``).
DATABASE_BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    if "database_backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        if marked("sqlite_only"):
            backends = ("sqlite",)
        elif marked("postgresql_only"):
            backends = ("postgresql",)
        else:
            backends = DATABASE_BACKENDS
        metafunc.parametrize("database_backend", backends, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the run (skips its tests when none is installed)."""
    programs = server_programs()
    if programs is None:
        pytest.skip("PostgreSQL's server is not installed (make test installs it with apt-get)")
    server = PostgresServer(programs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_backend(request) -> str:
    """``"sqlite"`` or ``"postgresql"`` (see the module docstring)."""
    return request.param


@pytest.fixture
def empty_database_url(database_backend, tmp_path, request) -> Iterator[str]:
    """The URL of a new, empty database: ``tmp_path/data/brainloc.db`` (not created yet) on
    SQLite, a database of its own on the test PostgreSQL server (dropped afterwards)."""
    if database_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'brainloc.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    get_engine.cache_clear()
    server.drop_database(url)


@pytest.fixture
def app_env(empty_database_url, database_backend, tmp_path, monkeypatch) -> Iterator[Settings]:
    """Settings for a fresh, migrated data directory under ``tmp_path`` (and, on PostgreSQL,
    ``DATABASE_URL`` naming a fresh database)."""
    monkeypatch.setenv("BRAINLOC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BRAINLOC_BCRYPT_ROUNDS", "4")
    for name in ("DATABASE_URL", "BRAINLOC_COOKIE_KEY", "BRAINLOC_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    if database_backend == "postgresql":
        monkeypatch.setenv("DATABASE_URL", empty_database_url)
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
