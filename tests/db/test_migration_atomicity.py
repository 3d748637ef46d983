"""An upgrade is applied entirely or not at all, on SQLite as on PostgreSQL.

An interrupted upgrade (an error in a later statement, the process killed) must leave the
database as the previous version made it, so that the next start migrates it again. The
failures are injected into a copy of ``db/migrations`` in a temporary folder; the real
migration scripts and ``env.py`` run around them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db.engine import make_engine
from db.migrate import ALEMBIC_INI, DatabaseStateError, alembic_config, upgrade_head

REPO = Path(__file__).resolve().parents[2]
STAMP = "'2026-01-01 00:00:00.000000'"
#: The newest schema revision, so that a new migration does not have to edit these tests.
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _scripts_failing_after(tmp_path: Path, script: str, statements: str) -> Path:
    """A copy of the migration scripts in which ``script``'s upgrade runs ``statements``
    after its own work."""
    scripts = tmp_path / "migrations"
    shutil.copytree(
        ALEMBIC_INI.parent / "migrations", scripts, ignore=shutil.ignore_patterns("__pycache__")
    )
    path = scripts / "versions" / script
    source = path.read_text()
    injected = textwrap.indent(textwrap.dedent(statements).strip(), "    ")
    path.write_text(source.replace("\n\n\ndef downgrade", f"\n{injected}\n\n\ndef downgrade", 1))
    return scripts


def _config(url: str, scripts: Path) -> Config:
    config = alembic_config(url)
    config.set_main_option("script_location", str(scripts))
    return config


def _state(url: str) -> tuple[str, list[str], list[str]]:
    """The schema revision, the users' columns and any tables a batch operation left."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            columns = [column["name"] for column in inspect(connection).get_columns("users")]
            tables = inspect(connection).get_table_names()
    finally:
        engine.dispose()
    return revision, columns, [table for table in tables if table.startswith("_alembic_tmp")]


def _add_account(url: str, *, with_history: bool = True) -> None:
    """An account that signed in once and analysed a case, as any database in use has
    (``with_history=False``: the account alone, nothing referring to it)."""
    statements = [
        "INSERT INTO users (username, full_name, email, password_hash, role, status, "
        "licence_number, institution, created_at, updated_at) VALUES ('old', 'Dr Old', "
        f"'old@clinic.example', 'x', 'practitioner', 'approved', '', '', {STAMP}, {STAMP})"
    ]
    if with_history:
        statements += [
            "INSERT INTO audit_events (created_at, actor_id, action, detail) "
            f"VALUES ({STAMP}, 1, 'login', '{{}}')",
            "INSERT INTO analyses (owner_id, case_reference, created_at, source_name, "
            "source_format, slice_count, classifier_name, classifier_version, segmenter_name, "
            "segmenter_version, decision_threshold, tumor_probability, has_tumor, findings) "
            f"VALUES (1, 'OLD-1', {STAMP}, 'a.tif', 'tiff', 0, 'c', '1', 's', '1', 0.5, 0.1, "
            ":no, '{}')",
        ]
    engine = make_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"no": False} if ":no" in statement else {})
    engine.dispose()


def test_an_upgrade_failing_in_a_later_statement_changes_nothing(empty_database_url, tmp_path):
    """On SQLite each statement committed on its own: an upgrade from 0005 whose 0007 failed
    after adding its first columns kept them (and 0006's) under revision 0005, and every later
    start failed with "duplicate column name"."""
    url = empty_database_url
    command.upgrade(alembic_config(url), "0005")
    before = _state(url)
    scripts = _scripts_failing_after(
        tmp_path,
        "0007_one_time_password_limits.py",
        'op.execute("SELECT no_such_column FROM users")',
    )
    with pytest.raises(Exception, match="no_such_column"):
        command.upgrade(_config(url, scripts), "head")
    assert _state(url) == before
    upgrade_head(url)  # the next start
    revision, columns, leftovers = _state(url)
    assert revision == HEAD and "one_time_password_used_at" in columns and not leftovers


def test_an_upgrade_killed_after_a_table_recreation_changes_nothing(empty_database_url, tmp_path):
    """0002 recreates ``users`` (a batch operation: copy to ``_alembic_tmp_users``, drop,
    rename). A process killed after it kept the copy's empty table under revision 0001 (the
    copy's ``CREATE TABLE`` had committed on its own), and every later start failed with
    "table _alembic_tmp_users already exists" (17 of 20 kills at random moments of an upgrade
    from 0001)."""
    url = empty_database_url
    command.upgrade(alembic_config(url), "0001")
    _add_account(url, with_history=False)
    before = _state(url)
    scripts = _scripts_failing_after(
        tmp_path,
        "0002_must_change_password.py",
        """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    migrate = (
        "import sys; from alembic import command; from db.migrate import alembic_config; "
        "config = alembic_config(sys.argv[1]); "
        "config.set_main_option('script_location', sys.argv[2]); command.upgrade(config, 'head')"
    )
    process = subprocess.run(
        [sys.executable, "-c", migrate, url, str(scripts)], cwd=REPO, capture_output=True
    )
    assert process.returncode == -9, process.stderr.decode()[-2000:]
    assert _state(url) == before
    upgrade_head(url)
    revision, columns, leftovers = _state(url)
    assert revision == HEAD and "must_change_password" in columns and not leftovers


def test_a_table_recreation_keeps_the_rows_that_refer_to_it(empty_database_url):
    """Dropping the old ``users`` in 0002's recreation, with foreign keys enforced, failed
    ("FOREIGN KEY constraint failed") as soon as an audit event or analysis referred to an
    account: a database of revision 0001 in use could not be upgraded. Foreign keys are now
    checked once, before the upgrade commits, and still enforced afterwards."""
    url = empty_database_url
    command.upgrade(alembic_config(url), "0001")
    _add_account(url)
    upgrade_head(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar() == 1
        owners = connection.execute(text("SELECT owner_id FROM analyses")).scalars().all()
        actors = connection.execute(text("SELECT actor_id FROM audit_events")).scalars().all()
        assert owners == [1] and actors == [1]
        if engine.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA foreign_key_check")).all() == []
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
    assert _state(url)[0] == HEAD


@pytest.mark.sqlite_only
def test_a_migration_that_breaks_references_is_refused_and_changes_nothing(
    empty_database_url, tmp_path
):
    # Foreign keys are off while SQLite migrates (a table recreation needs it); the check
    # before the commit still refuses a migration that leaves rows referring to missing ones.
    url = empty_database_url
    command.upgrade(alembic_config(url), "0006")
    _add_account(url)
    before = _state(url)
    scripts = _scripts_failing_after(
        tmp_path, "0007_one_time_password_limits.py", 'op.execute("DELETE FROM users")'
    )
    with pytest.raises(DatabaseStateError, match="analyses row 1 -> users"):
        command.upgrade(_config(url, scripts), "head")
    assert _state(url) == before
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar() == 1
    engine.dispose()
