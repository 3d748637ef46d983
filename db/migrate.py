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
