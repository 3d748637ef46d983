"""Alembic environment: migrates the database named by the settings (or by the caller).

``db.migrate.upgrade_head`` passes the URL in ``config.attributes["url"]``; the ``alembic``
command line falls back to the settings' ``DATABASE_URL``.

An upgrade is one transaction on every database: it is applied entirely or not at all, so an
interrupted one (the process killed, an error in a later statement) leaves the database as
the previous version made it. PostgreSQL does that by itself. On SQLite, Alembic ran each
statement as the driver pleased (its SQLite dialect has no transactional DDL, and Python's
sqlite3 begins a transaction only before an INSERT, UPDATE or DELETE): an upgrade from 0006
whose second statement failed, or whose process was killed there, kept 0007's first new
column under ``alembic_version`` 0006, and every later start failed with "duplicate column
name"; one killed in a table recreation kept ``_alembic_tmp_users``, and every later start
failed with "table _alembic_tmp_users already exists". SQLite itself runs DDL in
transactions; :func:`_migrate_sqlite` opens one on the driver and tells Alembic so.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import event
from sqlmodel import SQLModel

import db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from db.engine import begin_on_driver, make_engine
from db.migrate import DatabaseStateError

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return url
    from brainloc.settings import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection (the caller's, when one is given)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                _migrate_sqlite(connection)
                return
            context.configure(
                connection=connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _broken_references(connection) -> set[str]:
    """Rows whose foreign key names a missing row, as "table row id -> parent table"."""
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    return {f"{table} row {rowid} -> {parent}" for table, rowid, parent, _key in rows}


def _migrate_sqlite(connection) -> None:
    """Run the migrations on SQLite in one transaction, with foreign keys checked once at its
    end instead of statement by statement.

    A batch operation recreates a table: it copies it to ``_alembic_tmp_<name>``, drops the
    original and renames the copy. With foreign keys enforced (as every connection of
    :func:`db.engine.make_engine` has them), dropping ``users`` while an analysis or audit
    event refers to it failed ("FOREIGN KEY constraint failed"). SQLite's documented way to
    change a table (https://www.sqlite.org/lang_altertable.html#otheralter) turns foreign
    keys off outside the transaction (``PRAGMA foreign_keys`` does nothing inside one), runs
    ``PRAGMA foreign_key_check`` before the commit, and turns them on again. Only rows the
    migrations left broken refuse the upgrade (:class:`db.migrate.DatabaseStateError`, which
    the app shows), not ones that were so before.
    """
    driver_connection = connection.connection.driver_connection
    driver_connection.execute("PRAGMA foreign_keys=OFF")
    event.listen(connection, "begin", begin_on_driver)
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            # Alembic then wraps the whole upgrade in one transaction, as it does on
            # PostgreSQL: a failed upgrade leaves the schema the previous version used.
            transactional_ddl=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            broken_before = _broken_references(connection)
            context.run_migrations()
            broken = _broken_references(connection) - broken_before
            if broken:
                # Raised inside the transaction: nothing of the upgrade is kept.
                raise DatabaseStateError(
                    "the migration would leave rows referring to missing ones "
                    f"({', '.join(sorted(broken)[:5])}); nothing was changed"
                )
    finally:
        event.remove(connection, "begin", begin_on_driver)
        driver_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
