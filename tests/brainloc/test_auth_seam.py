"""The authentication seam: credentials for the library, cookie acceptance and revocation."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import bcrypt
from streamlit_authenticator.utilities import Hasher

from brainloc import account_security, accounts, auth
from db import audit
from db import users as user_store
from db.engine import session_scope
from tests.conftest import TEST_PASSWORD

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def _token(username: str, issued: datetime, cookie: auth.CookieConfig) -> dict:
    return {"username": username, "exp_date": issued.timestamp() + cookie.lifetime_seconds}


def test_cookie_config_uses_hours_and_the_settings_key(app_env):
    cookie = auth.cookie_config(app_env)
    assert cookie.expiry_days == 0.5 and cookie.lifetime_seconds == 12 * 3600
    assert cookie.key == app_env.cookie_key and len(cookie.key) >= 32


def test_credentials_hold_stored_hashes_the_library_accepts(make_account):
    make_account("alice")
    make_account("bob", status="pending")
    with session_scope() as session:
        credentials = auth.load_credentials(session)
    alice = credentials["usernames"]["alice"]
    assert set(credentials["usernames"]) == {"alice", "bob"}
    assert alice["roles"] == ["practitioner"] and alice["email"] == "alice@clinic.example"
    assert Hasher.check_pw(TEST_PASSWORD, alice["password"])
    assert bcrypt.checkpw(TEST_PASSWORD.encode(), alice["password"].encode())


def test_current_user_carries_category_label(make_account):
    user = make_account("alice")
    with session_scope() as session:
        current = auth.load_current_user(session, user_id=user.id)
        assert auth.load_current_user(session, user_id=9999) is None
    assert current.category == "Radiologist" and current.is_approved_practitioner
    assert not current.is_admin


def test_valid_cookie_signs_in_and_is_audited(make_account, app_env):
    user = make_account("alice")
    cookie = auth.cookie_config(app_env)
    with session_scope() as session:
        result = auth.user_from_cookie(
            session, token=_token("alice", NOW, cookie), cookie=cookie, clock=lambda: NOW
        )
        events = audit.list_events(session, actor_id=user.id)
    assert result.ok and result.user_id == user.id
    assert events[0].action == "login" and events[0].detail == {"method": "cookie"}


def test_cookie_issued_before_sign_out_is_refused(make_account, app_env):
    user = make_account("alice")
    cookie = auth.cookie_config(app_env)
    issued = NOW - timedelta(hours=1)
    with session_scope() as session:
        auth.record_logout(session, user_id=user.id, clock=lambda: NOW)
    with session_scope() as session:
        old = auth.user_from_cookie(
            session, token=_token("alice", issued, cookie), cookie=cookie, clock=lambda: NOW
        )
        later = NOW + timedelta(minutes=5)
        new = auth.user_from_cookie(
            session, token=_token("alice", later, cookie), cookie=cookie, clock=lambda: later
        )
        actions = [e.action for e in audit.list_events(session, actor_id=user.id)]
    assert not old.ok and "revoked" in old.message
    assert new.ok
    assert actions == ["login", "logout"]
    # The revoked cookie presented again (it may have been stolen) is on the record, for the
    # administrator and in the owner's security record, without counting towards a lockout.
    with session_scope() as session:
        refused = audit.list_events(
            session, target=("user", user.id), actions=[audit.Action.LOGIN_FAILED]
        )
        record = [e.description for e in account_security.security_events(session, user_id=user.id)]
        counted = audit.list_events(
            session, actor_id=user.id, actions=[audit.Action.LOGIN_FAILED]
        )  # what the lockout counts
    assert counted == []
    assert [e.detail for e in refused] == [
        {"reason": "sign-in cookie was revoked", "method": "cookie"}
    ]
    assert "A remembered sign-in that had been ended was presented again" in record


def test_expired_unknown_and_garbled_cookies_are_refused(make_account, app_env):
    make_account("alice")
    cookie = auth.cookie_config(app_env)
    long_ago = NOW - timedelta(days=2)
    cases = [
        _token("alice", long_ago, cookie),
        _token("mallory", NOW, cookie),
        {"username": "alice", "exp_date": "soon"},
        {},
    ]
    with session_scope() as session:
        for token in cases:
            assert not auth.user_from_cookie(
                session, token=token, cookie=cookie, clock=lambda: NOW
            ).ok


def test_a_cookie_from_before_a_revocation_stays_refused_across_a_clock_change(
    make_account, app_env
):
    # The library dates its cookie in the server's local time. Here the clocks go back an hour
    # (03:00 CEST -> 02:00 CET on 2026-10-25) within the cookie's 12 hours, so they are 13.
    user = make_account("alice")
    cookie = auth.cookie_config(app_env)
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        issued_local = datetime(2026, 10, 24, 20, 0)
        expires = (issued_local + timedelta(seconds=cookie.lifetime_seconds)).timestamp()
        issued = datetime.fromtimestamp(issued_local.timestamp(), tz=UTC)
        signed_out = issued + timedelta(minutes=30)
        with session_scope() as session:
            auth.record_logout(session, user_id=user.id, clock=lambda: signed_out)
        with session_scope() as session:
            result = auth.user_from_cookie(
                session,
                token={"username": "alice", "exp_date": expires},
                cookie=cookie,
                clock=lambda: signed_out + timedelta(minutes=30),
            )
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
    assert not result.ok and "revoked" in result.message


def test_a_cookie_issued_in_the_future_is_refused(make_account, app_env):
    # Only someone holding the key makes one; a far-future expiry must not outlive revocations.
    make_account("alice")
    cookie = auth.cookie_config(app_env)
    with session_scope() as session:
        forged = auth.user_from_cookie(
            session,
            token=_token("alice", NOW + timedelta(days=365), cookie),
            cookie=cookie,
            clock=lambda: NOW,
        )
        honest = auth.user_from_cookie(
            session, token=_token("alice", NOW, cookie), cookie=cookie, clock=lambda: NOW
        )
    assert not forged.ok and "future" in forged.message
    assert honest.ok
    with session_scope() as session:
        (refused,) = audit.list_events(session, actions=[audit.Action.LOGIN_FAILED])
    assert refused.detail["reason"] == "sign-in cookie issued in the future"


def _present(username: str, issued: datetime, cookie: auth.CookieConfig, at: datetime, **kw):
    """The browser comes back at ``at`` with the cookie issued at ``issued``."""
    with session_scope() as session:
        return auth.user_from_cookie(
            session, token=_token(username, issued, cookie), cookie=cookie, clock=lambda: at, **kw
        )


def _sign_in_with_password(username: str, at: datetime):
    with session_scope() as session:
        return accounts.check_login(
            session, username=username, password=TEST_PASSWORD, clock=lambda: at
        )


def test_a_cookie_is_refused_once_the_account_was_idle_past_the_limit(make_account, app_env):
    # The tab was closed 31 minutes after the last click (the default limit is 30), so the
    # idle timer never ran: the cookie must not bring the session back.
    user = make_account("alice")
    cookie = auth.cookie_config(app_env)
    assert _sign_in_with_password("alice", NOW).ok  # the cookie is issued with this sign-in
    within = _present("alice", NOW, cookie, NOW + timedelta(minutes=29))
    assert within.ok  # a reload within the limit: signed in, and that counts as activity
    late = NOW + timedelta(minutes=29 + 31)
    refused = _present("alice", NOW, cookie, late)
    assert not refused.ok and refused.idle
    with session_scope() as session:
        events = audit.list_events(session, actor_id=user.id)
        stored = user_store.get_user(session, user_id=user.id)
    assert (events[0].action, events[0].detail) == (
        "logout",
        {"reason": "idle", "cookie": "refused"},
    )
    assert [e.detail.get("method") for e in events[1:]] == ["cookie", "password"]
    assert account_security.describe(events[0]).description == (
        "Signed out after inactivity (a remembered sign-in was refused)"
    )
    # As the idle sign-out does: every remembered sign-in is revoked, also once more activity
    # would otherwise make this cookie look fresh; the revocation is audited once.
    assert stored.sessions_revoked_at == late
    again = _present("alice", NOW, cookie, late + timedelta(seconds=5))
    assert not again.ok and "revoked" in again.message
    with session_scope() as session:
        assert len(audit.list_events(session, actor_id=user.id)) == len(events)
    # A fresh sign-in gets a fresh cookie that works.
    fresh = late + timedelta(minutes=1)
    assert _sign_in_with_password("alice", fresh).ok
    assert _present("alice", fresh, cookie, fresh + timedelta(minutes=10)).ok


def test_activity_in_any_session_keeps_the_cookie_valid(make_account, app_env):
    user = make_account("alice")
    cookie = auth.cookie_config(app_env)
    assert _sign_in_with_password("alice", NOW).ok
    for minutes in (20, 40, 60):  # clicks in an open tab, saved by ui.idle
        with session_scope() as session:
            auth.record_activity(session, user_id=user.id, at=NOW + timedelta(minutes=minutes))
    with session_scope() as session:  # a late write from a slower session never goes back
        auth.record_activity(session, user_id=user.id, at=NOW + timedelta(minutes=5))
    assert _present("alice", NOW, cookie, NOW + timedelta(minutes=85), idle_minutes=30).ok
    # Then nothing for longer than the limit.
    gone = _present("alice", NOW, cookie, NOW + timedelta(minutes=85 + 31), idle_minutes=30)
    assert not gone.ok and gone.idle


def test_without_the_idle_limit_a_cookie_is_not_refused_for_inactivity(make_account, app_env):
    # BRAINLOC_IDLE_MINUTES=0: nothing changes, the cookie lives its 12 hours.
    make_account("alice")
    cookie = auth.cookie_config(app_env)
    assert _sign_in_with_password("alice", NOW).ok
    result = _present("alice", NOW, cookie, NOW + timedelta(hours=11), idle_minutes=0)
    assert result.ok and not result.idle
