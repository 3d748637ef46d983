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
