"""Data access for users and the audit log on a temporary database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db import audit
from db import users as user_store


def test_user_lookups(make_account, db_session):
    alice = make_account("alice")
    make_account("bob", status="pending")
    assert user_store.get_user(db_session, user_id=alice.id).username == "alice"
    assert user_store.get_user_by_username(db_session, username="alice").id == alice.id
    assert user_store.get_user_by_email(db_session, email="alice@clinic.example").id == alice.id
    assert user_store.get_user_by_username(db_session, username="nobody") is None
    assert [u.username for u in user_store.list_users(db_session, status="pending")] == ["bob"]
    assert user_store.count_users(db_session) == 2
    assert user_store.count_users(db_session, role="admin") == 0


def test_audit_events_filter_and_order(make_account, db_session):
    alice, bob = make_account("alice"), make_account("bob")
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for minutes, actor, action in [
        (0, alice, audit.Action.UPLOAD),
        (1, alice, audit.Action.VIEW),
        (2, bob, audit.Action.UPLOAD),
        (3, alice, audit.Action.NOTE_EDIT),
    ]:
        audit.record_event(
            db_session, action=action, actor_id=actor.id, target_type="analysis", target_id=1,
            at=start + timedelta(minutes=minutes), detail={"n": minutes},
        )  # fmt: skip
    db_session.commit()
    mine = audit.list_events(db_session, actor_id=alice.id)
    assert [e.action for e in mine] == ["note_edit", "view", "upload"]
    assert all(e.actor_id == alice.id for e in mine)
    uploads = audit.list_events(db_session, actions=[audit.Action.UPLOAD])
    assert {e.actor_id for e in uploads} == {alice.id, bob.id}
    recent = audit.list_events(db_session, since=start + timedelta(minutes=2))
    assert [e.detail["n"] for e in recent] == [3, 2]
    assert len(audit.list_events(db_session, limit=1)) == 1
    assert (
        audit.count_events(
            db_session, actor_id=alice.id, action="upload", after=start - timedelta(hours=1)
        )
        == 1
    )


def test_audit_search_for_administrators(make_account, db_session):
    admin, alice, bob = (
        make_account("root", role="admin"),
        make_account("alice"),
        make_account("bob"),
    )
    day = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    for minutes, actor, action, target in [
        (0, alice, audit.Action.UPLOAD, ("analysis", 1)),
        (10, bob, audit.Action.VIEW, ("analysis", 2)),
        (20, alice, audit.Action.VIEW, ("analysis", 1)),  # 23:50, still 1 March
        (40, admin, audit.Action.PASSWORD_RESET, ("user", alice.id)),  # 00:10, 2 March
        (50, bob, audit.Action.VIEW, ("analysis", 1)),
        (60, bob, audit.Action.LOGIN, ("user", bob.id)),
    ]:
        audit.record_event(
            db_session, action=action, actor_id=actor.id, target_type=target[0],
            target_id=target[1], at=day + timedelta(minutes=minutes),
        )  # fmt: skip
    db_session.commit()

    def search(**filters):
        found = audit.list_events(db_session, **filters)
        assert audit.count_matching(db_session, **filters) == len(found)
        return [(e.actor_id, e.action) for e in found]

    # Who touched analysis 1, newest first.
    assert search(target=("analysis", 1)) == [
        (bob.id, "view"), (alice.id, "view"), (alice.id, "upload"),
    ]  # fmt: skip
    # Alice's own actions and what was done to her account; not bob's sign-in.
    assert search(involving=alice.id) == [
        (admin.id, "password_reset"), (alice.id, "view"), (alice.id, "upload"),
    ]  # fmt: skip
    # One calendar day: from midnight (inclusive) to the next (exclusive).
    first = datetime(2026, 3, 2, tzinfo=UTC)
    assert search(since=first, until=first + timedelta(days=1)) == [
        (bob.id, "login"), (bob.id, "view"), (admin.id, "password_reset"),
    ]  # fmt: skip
    assert search(until=first, actions=["view"]) == [(alice.id, "view"), (bob.id, "view")]
    assert audit.count_matching(db_session) == 6
    assert audit.list_actions(db_session) == ["login", "password_reset", "upload", "view"]


def test_audit_refuses_empty_action_and_bad_limit(db_session):
    with pytest.raises(ValueError, match="action"):
        audit.record_event(db_session, action="", actor_id=None)
    with pytest.raises(ValueError, match="limit"):
        audit.list_events(db_session, limit=0)
