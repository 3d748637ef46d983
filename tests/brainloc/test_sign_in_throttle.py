"""The sign-in throttle by client address, on a real database: the limit, other addresses,
the window, unknown addresses, what the audit log keeps, the second step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import text

from brainloc import account_security, accounts, two_step
from brainloc.sign_in_throttle import (
    ADDRESS_FAILURE_WINDOW,
    MAX_ADDRESS_FAILURES,
    THROTTLED_REASON,
    client_key,
)
from db import audit
from db import users as user_store
from db.engine import get_engine, session_scope
from tests.conftest import TEST_PASSWORD

SPRAYER = "198.51.100.7"
NEIGHBOUR = "198.51.100.8"
#: Usernames sprayed with one password; few enough per account that no account locks.
NAMES = ("alice", "bob", "carol", "dave", "erin")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 4, 9, 0, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def _login(username, password, clock, address, verify=None):
    with session_scope() as session:
        return accounts.check_login(
            session, username=username, password=password, clock=clock, client_address=address,
            verify=verify,
        )  # fmt: skip


def _spray(clock, address, count, *, names=NAMES + ("ghost", "nobody")):
    """``count`` failed sign-ins from ``address``: one password against many usernames,
    existing and not, one second apart."""
    for attempt in range(count):
        result = _login(names[attempt % len(names)], "Summer2026!", clock, address)
        assert not result.ok and result.message == accounts.LOGIN_FAILED_MESSAGE
        clock.advance(seconds=1)


def _newest_event():
    with session_scope() as session:
        (event,) = audit.list_events(session, limit=1)
    return event


@pytest.fixture
def accounts_made(make_account):
    return {name: make_account(name) for name in NAMES}


def test_an_address_is_refused_at_the_limit_before_any_password_is_checked(accounts_made):
    clock = Clock()
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES - 1)
    assert not _login("alice", "Summer2026!", clock, SPRAYER).locked_now  # the 20th failure
    calls = []

    def verify(name, password):
        calls.append(name)
        return True

    refused = _login("alice", TEST_PASSWORD, clock, SPRAYER, verify=verify)
    assert not refused.ok and calls == []  # the right password, never checked
    assert "too many failed sign-ins came from this network address" in refused.message
    assert "Try again in 15 minutes" in refused.message
    event = _newest_event()
    assert (event.action, event.actor_id, event.client_address) == ("login_failed", None, None)
    assert event.detail == {
        "username": "al… (5 characters)", "reason": THROTTLED_REASON, "address": SPRAYER,
    }  # fmt: skip
    # No account was locked by the spraying: each got fewer than 5 failures.
    with session_scope() as session:
        assert all(
            user_store.get_user(session, user_id=user.id).locked_until is None
            for user in accounts_made.values()
        )


def test_other_addresses_and_unknown_addresses_are_not_refused(accounts_made):
    clock = Clock()
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES)
    assert not _login("bob", TEST_PASSWORD, clock, SPRAYER).ok
    assert _login("bob", TEST_PASSWORD, clock, NEIGHBOUR).ok
    assert _login("carol", TEST_PASSWORD, clock, None).ok


def test_an_unknown_address_is_never_throttled_and_its_failures_count_for_no_address(
    accounts_made,
):
    clock = Clock()
    _spray(clock, None, MAX_ADDRESS_FAILURES + 5)
    _spray(clock, "", 3)  # blank is unknown too
    assert _login("dave", TEST_PASSWORD, clock, None).ok
    assert _login("erin", TEST_PASSWORD, clock, SPRAYER).ok
    with session_scope() as session:
        failed = audit.list_events(session, actions=["login_failed"], limit=100)
    assert all(e.client_address is None and "address" not in e.detail for e in failed)


def test_the_refusal_ends_when_the_failures_leave_the_window(accounts_made):
    clock = Clock()
    first_failure = clock()
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES)  # one a second, 20 seconds in all
    clock.advance(minutes=10)
    refused = _login("alice", TEST_PASSWORD, clock, SPRAYER)
    assert not refused.ok and "Try again in 5 minutes" in refused.message
    # Refusals count for nothing, so trying on does not push the end further away; the
    # address is free once the oldest failure has left the window, not before.
    clock.now = first_failure + ADDRESS_FAILURE_WINDOW - timedelta(seconds=1)
    last = _login("alice", TEST_PASSWORD, clock, SPRAYER)
    assert not last.ok and "Try again in 1 minute." in last.message
    clock.now = first_failure + ADDRESS_FAILURE_WINDOW
    assert _login("alice", TEST_PASSWORD, clock, SPRAYER).ok


def test_failures_spread_beyond_the_window_never_refuse_the_address(accounts_made):
    clock = Clock()
    for _ in range(3):
        _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES - 1)
        clock.advance(minutes=16)
    assert _login("alice", TEST_PASSWORD, clock, SPRAYER).ok


def test_a_success_does_not_clear_the_address_count(accounts_made):
    """An attacker with an account of their own could otherwise sign in between guesses."""
    clock = Clock()
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES - 1)
    assert _login("alice", TEST_PASSWORD, clock, SPRAYER).ok
    _spray(clock, SPRAYER, 1)
    assert not _login("alice", TEST_PASSWORD, clock, SPRAYER).ok


def test_the_refusal_does_not_tell_whether_the_username_exists(accounts_made):
    clock = Clock()
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES)
    messages = {
        _login(name, password, clock, SPRAYER).message
        for name, password in [
            ("alice", TEST_PASSWORD), ("alice", "wrong-password"), ("ghost", "wrong-password"),
            ("", ""), ("correct-horse-battery-9", "x"),
        ]
    }  # fmt: skip
    assert len(messages) == 1
    (message,) = messages
    assert "alice" not in message and "ghost" not in message


def test_every_failure_records_its_address_and_counts_towards_it(accounts_made):
    clock = Clock()
    _login("ghost", "x", clock, SPRAYER)
    _login("alice", "x", clock, "2001:DB8:0::1")
    for _ in range(6):  # the fifth locks bob; the sixth meets the lock
        _login("bob", "x", clock, "::ffff:192.0.2.9")
    with session_scope() as session:
        failed = audit.list_events(session, actions=["login_failed"], limit=10)
    summary = [(e.detail["reason"], e.client_address, e.detail["address"]) for e in failed]
    assert summary[::-1] == [
        ("unknown username", SPRAYER, SPRAYER),
        ("wrong password", "2001:db8::1", "2001:db8::1"),
        *[("wrong password", "192.0.2.9", "192.0.2.9")] * 5,
        ("account locked", "192.0.2.9", "192.0.2.9"),
    ]


def test_addresses_are_compared_in_their_canonical_form():
    assert client_key(None) is None and client_key("  ") is None
    assert client_key(" 2001:DB8:0:0::1 ") == "2001:db8::1"
    assert client_key("::ffff:192.0.2.9") == "192.0.2.9"
    assert client_key("203.0.113.5") == "203.0.113.5"
    assert client_key("x" * 100) == "x" * 64


def test_wrong_two_step_codes_count_and_a_refused_address_gets_no_code_check(accounts_made):
    clock = Clock()
    alice = accounts_made["alice"]
    enrolment = two_step.new_enrolment(username="alice")
    with session_scope() as session:
        two_step.enable(
            session, user_id=alice.id, enrolment=enrolment,
            code=pyotp.TOTP(enrolment.secret).at(clock()), clock=clock,
        )  # fmt: skip
    clock.advance(seconds=60)
    _spray(clock, SPRAYER, MAX_ADDRESS_FAILURES - 1, names=("ghost",))
    asked = _login("alice", TEST_PASSWORD, clock, SPRAYER)
    assert asked.ok and asked.second_step

    def second(code, address=SPRAYER):
        with session_scope() as session:
            return two_step.check_second_step(
                session, user_id=alice.id, code=code, password_checked_at=clock(), clock=clock,
                client_address=address,
            )  # fmt: skip

    wrong = second("000000")  # the 20th failure from the address
    assert not wrong.ok and wrong.message == two_step.WRONG_SIGN_IN_CODE
    assert _newest_event().client_address == SPRAYER
    right_code = pyotp.TOTP(enrolment.secret).at(clock())
    refused = second(right_code)
    assert not refused.ok and refused.start_over
    assert "too many failed sign-ins came from this network address" in refused.message
    event = _newest_event()
    assert (event.actor_id, event.target_id, event.detail["reason"]) == (
        None, alice.id, THROTTLED_REASON,
    )  # fmt: skip
    with session_scope() as session:
        (line, *_) = account_security.security_events(session, user_id=alice.id, clock=clock)
    assert line.alert and "too many failed sign-ins" in line.description  # the owner is told
    assert second(right_code, NEIGHBOUR).ok  # the refusal did not look at (or spend) it


def test_the_count_reads_the_address_index(app_env, database_backend):
    """The query :func:`db.audit.nth_newest_from_address` makes, as the database plans it
    (PostgreSQL told to avoid a full scan, which it prefers on a table this small)."""
    query = (
        "SELECT created_at FROM audit_events WHERE client_address = '198.51.100.7' "
        "AND action = 'login_failed' AND created_at > '2026-05-04' "
        "ORDER BY created_at DESC LIMIT 1 OFFSET 19"
    )
    with get_engine(app_env.database_url).connect() as connection:
        if database_backend == "sqlite":
            plan = [row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))]
        else:
            connection.execute(text("SET enable_seqscan = off"))
            plan = [row[0] for row in connection.execute(text(f"EXPLAIN {query}"))]
    assert any("ix_audit_address_action_time" in line for line in plan), plan
