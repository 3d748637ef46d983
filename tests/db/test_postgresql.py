"""What only a PostgreSQL server does for BrainLoc (every other database test runs on both
SQLite and PostgreSQL; see tests/conftest.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from db.engine import make_engine
from db.migrate import upgrade_head
from db.models import User
from db.users import get_user, get_user_locked


def test_a_locked_account_row_makes_a_second_decision_wait(postgres_server):
    # get_user_locked is what makes two requests deciding on one account (two-step codes,
    # the lockout) take turns when several server processes share one PostgreSQL.
    url = postgres_server.create_database()
    engine = make_engine(url)
    try:
        upgrade_head(url)
        with Session(engine) as session:
            user = User(
                username="alice",
                full_name="Dr Alice",
                email="alice@clinic.example",
                password_hash="x" * 60,
            )
            session.add(user)
            session.commit()
            user_id = user.id
        with Session(engine) as first, Session(engine) as second:
            assert get_user_locked(first, user_id=user_id).username == "alice"
            second.exec(text("SET lock_timeout = '300ms'"))
            assert get_user(second, user_id=user_id).username == "alice"  # reading never waits
            with pytest.raises(OperationalError, match="lock timeout"):
                get_user_locked(second, user_id=user_id)
            second.rollback()
            first.commit()  # the first decision is made: the row is free again
            assert get_user_locked(second, user_id=user_id).username == "alice"
            second.commit()
    finally:
        engine.dispose()
        postgres_server.drop_database(url)


def test_two_saves_of_one_owner_at_once_do_not_deadlock(postgres_server, monkeypatch):
    """Two analyses of one practitioner saved at the same moment (two tabs, or the demo
    command beside the app). Each analysis row's foreign key takes a share lock on the
    owner's row; the owner check that followed then asked for that row ``FOR UPDATE``, and
    each save waited for the other's share lock: PostgreSQL ended one with "deadlock
    detected" and the page said the analysis failed. The owner's row is locked first."""
    import contextlib
    import threading

    from db import clinical
    from db import users as user_store
    from db.models import Analysis
    from tests.db.clinical_factory import make_slice, make_user

    url = postgres_server.create_database()
    engine = make_engine(url)
    try:
        upgrade_head(url)
        with Session(engine) as session:
            owner_id = make_user(session, "alice").id
            session.commit()
        both_inserted = threading.Barrier(2)
        real_get_user_locked = user_store.get_user_locked

        def after_both_inserted(session, *, user_id):
            # The moment the race needs: both saves have written their analysis row. Where
            # one save waits for the other's lock instead, the barrier times out: no race.
            if any(isinstance(item, Analysis) for item in session.identity_map.values()):
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_inserted.wait(timeout=2)
            return real_get_user_locked(session, user_id=user_id)

        monkeypatch.setattr(user_store, "get_user_locked", after_both_inserted)
        outcomes: dict[str, str] = {}

        def save(reference: str) -> None:
            try:
                with Session(engine) as session:
                    clinical.create_analysis(
                        session, owner_id=owner_id, case_reference=reference,
                        slices=[make_slice()],
                    )  # fmt: skip
                    session.commit()
                outcomes[reference] = "saved"
            except Exception as error:  # noqa: BLE001 - the outcome is the assertion
                outcomes[reference] = f"{type(error).__name__}: {error}"

        saves = [threading.Thread(target=save, args=(reference,)) for reference in "AB"]
        for thread in saves:
            thread.start()
        for thread in saves:
            thread.join(timeout=60)
        assert outcomes == {"A": "saved", "B": "saved"}
        with Session(engine) as session:
            assert clinical.count_analyses(session, owner_id=owner_id) == 2
    finally:
        engine.dispose()
        postgres_server.drop_database(url)
