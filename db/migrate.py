"""Run the Alembic migrations programmatically (the app does this at start)."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

logger = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that uses ``db/migrations``."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "migrations"))
    config.attributes["url"] = url
    return config


def known_revisions() -> set[str]:
    """Every schema revision this version's migrations know (an archive or database from a
    newer version holds one they do not)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def upgrade_head(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (a no-op when it is current)."""
    with one_migration_at_a_time(url):
        command.upgrade(alembic_config(url), "head")


#: The PostgreSQL advisory lock key migrations take (any number; the same in every process).
POSTGRESQL_MIGRATION_LOCK = 0x42524C4D  # "BRLM"


@contextmanager
def one_migration_at_a_time(url: str) -> Iterator[None]:
    """Hold, until the block ends, a lock that every process migrating the database at ``url``
    takes first.

    The app and the commands (``create-admin`` …) each migrate at start, and the first start
    of the app and ``create-admin`` in a second terminal come together. Two processes both
    found no schema and one failed: on SQLite ("table alembic_version already exists",
    "database is locked"; Alembic's statements run one by one there), and on PostgreSQL, where
    the second's ``CREATE TABLE`` waited for the first's transaction and then broke a unique
    constraint of the catalog (6 of 10 tries with three processes). With the lock the second
    finds the schema current and changes nothing. On SQLite it is an ``flock`` of the
    database's folder, which nothing else locks: opening and closing the database file itself
    would drop the locks SQLite holds on it in this process. On PostgreSQL it is an advisory
    lock (:data:`POSTGRESQL_MIGRATION_LOCK`) on a connection of its own. Other databases: none.

    Raises:
        OSError: the SQLite folder cannot be created or opened.
        sqlalchemy.exc.SQLAlchemyError: the PostgreSQL server cannot be reached.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "postgresql":
        with _postgresql_migration_lock(url):
            yield
        return
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        yield
        return
    if database.startswith("file:"):  # an SQLite URI; its path ends at the query
        database = database.removeprefix("file:").split("?")[0]
    folder = Path(database).parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # which releases the lock


@contextmanager
def _postgresql_migration_lock(url: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            lock = {"key": POSTGRESQL_MIGRATION_LOCK}
            connection.execute(text("SELECT pg_advisory_lock(:key)"), lock)
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
    finally:
        engine.dispose()


class DatabaseStateError(Exception):
    """A database this version cannot use: not a database, unreadable, or from a newer
    version; the message says which, for the operator."""


def upgrade_known(url: str) -> None:
    """:func:`upgrade_head`, after refusing a database whose schema revision this version does
    not know (made by a newer version) or that cannot be opened as a database.

    Raises:
        DatabaseStateError: the database is refused; nothing in it was changed.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = (
        parsed.database
        if parsed.get_backend_name() == "sqlite" and parsed.database
        else parsed.render_as_string(hide_password=True)
    )
    with ExitStack() as lock:
        with _opening(where):
            lock.enter_context(one_migration_at_a_time(url))
        _upgrade_known(url, where)


@contextmanager
def _opening(where: str) -> Iterator[None]:
    """Turn an error opening the database (a file, a server) into :class:`DatabaseStateError`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except OSError as error:
        raise DatabaseStateError(
            f"the database {where} cannot be opened: {error.strerror or error}"
        ) from None
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseStateError(f"the database {where} cannot be opened: {reason}") from None


def _upgrade_known(url: str, where: str) -> None:
    """:func:`upgrade_known` while its lock is held."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.engine import make_engine

    with _opening(where):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                from alembic.runtime.migration import MigrationContext

                heads = MigrationContext.configure(connection).get_current_heads()
        finally:
            engine.dispose()
    unknown = sorted(set(heads) - known_revisions())
    if unknown:
        raise DatabaseStateError(
            f"the database {where} has schema revision {', '.join(unknown)}, which this version "
            "of BrainLoc does not know: it was made by a newer version; use that version or a "
            "later one"
        )
    try:
        command.upgrade(alembic_config(url), "head")
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseStateError(f"the database {where} cannot be migrated: {reason}") from None
