"""The schema on a real SQLite file: migrations match the tables, seeds, pragmas, types."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from db.arrays import array_from_bytes, array_to_bytes, sha256_hex
from db.engine import get_engine, make_engine, session_scope
from db.migrate import DatabaseStateError, alembic_config, upgrade_head, upgrade_known
from db.models import PRACTITIONER_CATEGORIES, User
from db.users import list_categories


def test_migrations_create_exactly_the_models(app_env):
    engine = get_engine(app_env.database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
    assert set(inspect(engine).get_table_names()) >= {
        "users",
        "practitioner_categories",
        "analyses",
        "analysis_slices",
        "note_versions",
        "issued_reports",
        "audit_events",
        "alembic_version",
    }


def test_upgrade_is_idempotent_and_categories_are_seeded_once(app_env):
    upgrade_head(app_env.database_url)
    with session_scope() as session:
        categories = list_categories(session)
    assert [(c.code, c.label) for c in categories] == list(PRACTITIONER_CATEGORIES)
    labels = {c.label for c in categories}
    assert {"Neuroradiologist", "Medical researcher / lab researcher"} <= labels


def _migrate_when_all_are_ready(url: str, ready, results) -> None:
    """One process starting BrainLoc (the app, or a command such as ``create-admin``)."""
    ready.wait()
    try:
        upgrade_known(url)
    except DatabaseStateError as error:
        results.put(str(error))
    else:
        results.put("ok")


def test_processes_starting_at_once_on_a_new_database_all_migrate_it(
    database_backend, tmp_path, request
):
    """The app's first start and ``create-admin`` in a second terminal migrate the new database
    at the same moment. They took turns at nothing: one failed with "table alembic_version
    already exists" or "database is locked" (8 tries in 10 on SQLite); now they wait for each
    other, on SQLite and on PostgreSQL."""
    spawn = multiprocessing.get_context("spawn")
    for attempt in range(4):
        if database_backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'start{attempt}' / 'brainloc.db'}"
        else:
            url = request.getfixturevalue("postgres_server").create_database()
        ready, results = spawn.Barrier(3), spawn.Queue()
        starts = [
            spawn.Process(target=_migrate_when_all_are_ready, args=(url, ready, results))
            for _ in range(3)
        ]
        for start in starts:
            start.start()
        outcomes = [results.get(timeout=120) for _ in starts]
        for start in starts:
            start.join(timeout=60)
        assert outcomes == ["ok"] * 3, outcomes
        engine = make_engine(url)
        with Session(engine) as session:
            assert len(list_categories(session)) == len(PRACTITIONER_CATEGORIES)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
        engine.dispose()


@pytest.mark.sqlite_only
def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(app_env):
    with get_engine(app_env.database_url).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_engine_is_one_per_process_and_url(app_env):
    assert get_engine(app_env.database_url) is get_engine(app_env.database_url)
    assert get_engine() is get_engine(app_env.database_url)


def test_foreign_keys_are_enforced(db_session):
    db_session.add(
        User(
            username="ghost",
            full_name="Ghost",
            email="ghost@x.org",
            password_hash="x",
            category_id=999,
        )
    )
    with pytest.raises(IntegrityError):
        db_session.commit()


def test_role_and_status_are_constrained(db_session):
    db_session.add(User(username="eve", full_name="Eve", email="e@x.org", password_hash="x",
                        status="superuser"))  # fmt: skip
    with pytest.raises(IntegrityError):
        db_session.commit()


def test_session_scope_rolls_back_on_error(app_env):
    with pytest.raises(RuntimeError), session_scope() as session:
        session.add(User(username="temp", full_name="Temp", email="t@x.org", password_hash="x"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope() as session:
        assert session.exec(text("SELECT count(*) FROM users")).scalar() == 0


def test_timestamps_come_back_as_aware_utc(db_session):
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    local = moment.astimezone(timezone(timedelta(hours=5)))
    user = User(username="tz", full_name="Tz", email="tz@x.org", password_hash="x",
                created_at=local, updated_at=local)  # fmt: skip
    db_session.add(user)
    db_session.commit()
    db_session.expire_all()
    stored = db_session.get(User, user.id)
    assert stored.created_at == moment and stored.created_at.tzinfo is not None


def test_naive_timestamps_are_refused(db_session):
    db_session.add(User(username="naive", full_name="N", email="n@x.org", password_hash="x",
                        created_at=datetime(2026, 1, 1)))  # fmt: skip
    with pytest.raises(Exception, match="timezone-aware"):
        db_session.commit()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(256 * 256 * 3, dtype=np.uint8).reshape(256, 256, 3),
        np.linspace(0, 65535, 48, dtype=np.uint16).reshape(4, 12),
        np.eye(7, dtype=bool),
        np.random.default_rng(0).normal(size=(3, 5, 5)).astype(np.float32),
    ],
)
def test_array_codec_round_trips_exactly(array):
    data = array_to_bytes(array)
    back = array_from_bytes(data)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert len(sha256_hex(data)) == 64


def test_array_codec_refuses_pickles_and_foreign_bytes():
    with pytest.raises(ValueError):
        array_to_bytes(np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        array_from_bytes(b"not an npz file")


def test_upgrading_keeps_existing_accounts_free_of_the_password_change(empty_database_url):
    # A database made by release 0001 with an account in it, then brought to head.
    url = empty_database_url
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, full_name, email, password_hash, role, status, "
                "licence_number, institution, created_at, updated_at) VALUES ('old', 'Dr Old', "
                "'old@clinic.example', 'x', 'admin', 'approved', '', '', "
                "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )
    upgrade_head(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT must_change_password FROM users")).all() == [
            (False,)
        ]
    engine.dispose()


def test_upgrading_keeps_old_analyses_with_their_arithmetic_not_recorded(empty_database_url):
    from brainloc.casework import load_case

    url = empty_database_url
    command.upgrade(alembic_config(url), "0002")
    engine = make_engine(url)
    stamp = "'2026-01-01 00:00:00.000000'"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, full_name, email, password_hash, role, status, "
                "licence_number, institution, created_at, updated_at, must_change_password) "
                f"VALUES ('old', 'Dr Old', 'old@clinic.example', 'x', 'practitioner', "
                f"'approved', 'R-1', 'H', {stamp}, {stamp}, :no)"
            ),
            {"no": False},
        )
        connection.execute(
            text(
                "INSERT INTO analyses (owner_id, case_reference, created_at, source_name, "
                "source_format, slice_count, classifier_name, classifier_version, "
                "segmenter_name, segmenter_version, decision_threshold, tumor_probability, "
                f"has_tumor, findings) VALUES (1, 'OLD-1', {stamp}, 'a.tif', 'tiff', 0, "
                "'brainloc-classifier', '2.2.0', 'brainloc-segmenter', '2.2.0', 0.5, 0.1, :no, "
                "'{}')"
            ),
            {"no": False},
        )
    upgrade_head(url)
    with Session(engine) as session:
        case = load_case(session, owner_id=1, analysis_id=1)
    assert case.arithmetic == ""
    assert case.models_text == "brainloc-classifier v2.2.0, brainloc-segmenter v2.2.0"
    engine.dispose()


def test_make_engine_works_for_a_new_file_in_a_new_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'x.db'}"
    upgrade_head(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            assert len(list_categories(session)) == len(PRACTITIONER_CATEGORIES)
    finally:
        engine.dispose()


def test_a_new_database_is_readable_by_its_owner_only(tmp_path):
    import stat

    from db.engine import make_engine

    data = tmp_path / "fresh"
    url = f"sqlite:///{data / 'brainloc.db'}"
    upgrade_head(url)
    make_engine(url).dispose()
    assert stat.S_IMODE((data / "brainloc.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    # One made world-readable by an earlier version is tightened when it is opened.
    (data / "brainloc.db").chmod(0o644)
    make_engine(url).dispose()
    assert stat.S_IMODE((data / "brainloc.db").stat().st_mode) == 0o600


def test_database_errors_never_show_the_statements_parameters(db_session):
    # An error's text reaches the server log and the commands' output: it must not carry a
    # password hash (or a two-step secret, or a scan) that the statement was writing.
    secret = "$2b$12$" + "S3cretHashThatMustNotLeak" * 2
    for name in ("alice", "alice"):  # the second breaks the unique username
        db_session.add(
            User(username=name, full_name="Dr A", email=f"{len(name)}@x.org", password_hash=secret)
        )
    with pytest.raises(IntegrityError) as raised:
        db_session.commit()
    assert "S3cretHash" not in str(raised.value)
    assert "INSERT INTO users" in str(raised.value)  # the statement itself is still named
