"""The engine (one per process and database URL) and short per-action sessions.

SQLite connections get WAL journaling (readers never block the writer), foreign keys, a
busy timeout and a Unicode case-folding SQL function (:data:`SQLITE_CASEFOLD`) through a
connect event, and a savepoint nests inside the session's transaction as it does elsewhere
(:func:`begin_on_driver`), so the same code runs unchanged on PostgreSQL.
:func:`get_engine` is cached per URL for the life of the process, which is what
``st.cache_resource`` would give the app, without tying this package to Streamlit.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Name of the SQL function every SQLite connection gets: Python's ``str.casefold`` (NULL and
#: non-text values pass through). SQLite's own ``lower()``, ``LIKE`` and ``NOCASE`` fold ASCII
#: letters only, so case-insensitive search compares folded text (``db.clinical``).
SQLITE_CASEFOLD = "brainloc_casefold"


def _casefold(value):
    return value.casefold() if isinstance(value, str) else value


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.create_function(SQLITE_CASEFOLD, 1, _casefold, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def begin_on_driver(connection, *_event_args) -> None:
    """Open the transaction on the SQLite driver when none is open (a listener of the
    ``savepoint`` event here, and of ``begin`` for a migration, :mod:`db.migrations.env`).

    Python's sqlite3 driver begins a transaction only before an INSERT, UPDATE or DELETE, and
    SQLite takes a ``SAVEPOINT`` outside a transaction as the transaction itself, whose
    ``RELEASE`` commits. A savepoint as a session's first write (a note version,
    :mod:`db.clinical_notes`) was therefore committed on its own, before the rest of the
    caller's transaction, which a later error could no longer take back; likewise every DDL
    statement of a migration before its first INSERT. A deferred ``BEGIN``, as the driver's
    own: a transaction that only reads does not wait for the write lock.
    """
    driver_connection = connection.connection.driver_connection
    if not driver_connection.in_transaction:
        driver_connection.execute("BEGIN")


def _private_database_file(path: Path) -> None:
    """Make the SQLite file readable by this user only (0600, in a 0700 folder when the folder
    is new): it holds every scan, password hash and two-step secret. SQLite gives its ``-wal``
    and ``-shm`` files the database file's permissions. A database file that others could read
    (made by an earlier version) is tightened."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # an empty file is a database
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if file.exists() and stat.S_IMODE(file.stat().st_mode) & 0o077:
            try:
                os.chmod(file, 0o600)
            except OSError as error:  # not ours (a group-shared file): leave it, say so
                logger.warning("%s is readable by others and cannot be changed: %s", file, error)
            else:
                logger.info("made %s readable by its owner only", file)


def make_engine(url: str) -> Engine:
    """Create a new engine for ``url``; prefer :func:`get_engine` outside tests.

    Its errors never show the statement's parameters (``hide_parameters``): a database error's
    text reaches logs and command-line output, and the parameters are password hashes,
    two-step secrets and patients' scans.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        # ":memory:" and URI filenames ("file:…") are SQLite's to open.
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_database_file(Path(database))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "savepoint", begin_on_driver)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


@functools.cache
def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the settings' ``DATABASE_URL``)."""
    if url is None:
        from brainloc.settings import get_settings

        return get_engine(get_settings().database_url)
    logger.info("opening database %s", make_url(url).render_as_string(hide_password=True))
    return make_engine(url)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A short session for one action: commits on success, rolls back on any error.

    Objects stay readable after the block (``expire_on_commit=False``), so pages can show
    the values they got back without touching the database again.
    """
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
