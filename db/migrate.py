"""Run the Alembic migrations programmatically (the app does this at start)."""

from __future__ import annotations

import logging
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
    command.upgrade(alembic_config(url), "head")


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
    from sqlalchemy.exc import SQLAlchemyError

    from db.engine import make_engine

    parsed = make_url(url)
    where = (
        parsed.database
        if parsed.get_backend_name() == "sqlite" and parsed.database
        else parsed.render_as_string(hide_password=True)
    )
    try:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                from alembic.runtime.migration import MigrationContext

                heads = MigrationContext.configure(connection).get_current_heads()
        finally:
            engine.dispose()
    except OSError as error:
        raise DatabaseStateError(
            f"the database {where} cannot be opened: {error.strerror or error}"
        ) from None
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseStateError(f"the database {where} cannot be opened: {reason}") from None
    unknown = sorted(set(heads) - known_revisions())
    if unknown:
        raise DatabaseStateError(
            f"the database {where} has schema revision {', '.join(unknown)}, which this version "
            "of BrainLoc does not know: it was made by a newer version; use that version or a "
            "later one"
        )
    try:
        upgrade_head(url)
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseStateError(f"the database {where} cannot be migrated: {reason}") from None
