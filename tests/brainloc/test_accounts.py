"""Accounts on a real database: registration rules, duplicates, lockout timing, decisions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from brainloc import account_admin, account_security, accounts
from db import audit
from db import users as user_store
from db.engine import session_scope
from tests.conftest import TEST_PASSWORD

GOOD = accounts.Registration(
    full_name="Dr Jane Doe",
    email="Jane.Doe@Hospital.org",
    username="JDoe",
    password="a-long-passphrase",
    password_repeat="a-long-passphrase",
    category_code="neuroradiologist",
    licence_number="GMC 1234567",
    institution="St Mary's Hospital",
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def _register(form):
    with session_scope() as session:
        return accounts.register_practitioner(session, form=form)


def test_registration_creates_a_pending_practitioner(app_env):
    user = _register(GOOD)
    assert (user.username, user.email) == ("jdoe", "jane.doe@hospital.org")
    assert (user.role, user.status) == ("practitioner", "pending")
    assert user.password_hash.startswith("$2") and GOOD.password not in user.password_hash
    assert accounts.verify_password(GOOD.password, user.password_hash)
    with session_scope() as session:
        events = audit.list_events(session, actor_id=user.id)
    assert [e.action for e in events] == ["register"]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"password": "short", "password_repeat": "short"}, "password", "at least 10"),
        ({"password": "jdoe", "password_repeat": "jdoe"}, "password", "at least 10"),
        (
            {"username": "drjanedoe1", "password": "DrJaneDoe1", "password_repeat": "DrJaneDoe1"},
            "password",
            "same as your username",
        ),
        (
            {"password": "jane.doe@hospital.org", "password_repeat": "jane.doe@hospital.org"},
            "password",
            "same as your username or email",
        ),
        ({"password_repeat": "something-else"}, "password", "do not match"),
        ({"password": "Password123!", "password_repeat": "Password123!"}, "password", "guess"),
        ({"password": "qwertyuiop", "password_repeat": "qwertyuiop"}, "password", "top-100"),
        # Strong to zxcvbn on their own, weak once the account's own names are known:
        ({"password": "jane.doe1984", "password_repeat": "jane.doe1984"}, "password", "guess"),
        ({"password": "brainloc2026", "password_repeat": "brainloc2026"}, "password", "guess"),
        ({"password": " padded-pass ", "password_repeat": " padded-pass "}, "password", "space"),
        ({"email": "not-an-email"}, "email", "valid email"),
        ({"email": "a@b"}, "email", "valid email"),
        ({"username": "x"}, "username", "3-32"),
        ({"username": "9lives"}, "username", "letter first"),
        ({"username": "bad name"}, "username", "3-32"),
        ({"full_name": " "}, "full_name", "Full name"),
        ({"category_code": "astrologer"}, "category", "category"),
        ({"licence_number": ""}, "licence_number", "licence"),
        ({"institution": "x"}, "institution", "Institution"),
    ],
)
def test_registration_rules_give_clear_messages(app_env, change, field, fragment):
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, **change))
    assert field in caught.value.errors
    assert fragment.lower() in caught.value.errors[field].lower()
    with session_scope() as session:
        assert user_store.count_users(session) == 0  # nothing saved


def test_invisible_and_look_alike_characters_do_not_make_a_second_identity(app_env):
    _register(GOOD)
    # A zero-width space hidden in the address is dropped: the address is the same one.
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe2", email="jane.doe\u200b@hospital.org"))
    assert set(caught.value.errors) == {"email"}
    # A Cyrillic "а" in the domain is stored in its xn-- form, visibly another domain.
    other = _register(replace(GOOD, username="jdoe3", email="jane.doe@hospit\u0430l.org"))
    assert other.email.startswith("jane.doe@xn--") and other.email.isascii()
    # A name of invisible characters is no name; full-width letters are folded.
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe4", email="x@y.org", full_name="\u200b\u200b"))
    assert set(caught.value.errors) == {"full_name"}
    wide = _register(
        replace(GOOD, username="jdoe5", email="z@y.org", full_name="Dr \uff2a\uff41\uff4e\uff45")
    )
    assert wide.full_name == "Dr Jane"
    # A non-ASCII local part cannot be told apart by the administrator: refused.
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe6", email="j\u0430ne@hospital.org"))
    assert set(caught.value.errors) == {"email"}


def test_all_problems_are_reported_at_once(app_env):
    bad = replace(GOOD, email="nope", username="?", password="x", password_repeat="y")
    with pytest.raises(accounts.AccountError) as caught:
        _register(bad)
    assert {"email", "username", "password"} <= set(caught.value.errors)


def test_duplicate_username_and_email_are_refused_case_insensitively(app_env):
    _register(GOOD)
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe", email="other@hospital.org"))
    assert caught.value.errors == {"username": "This username is already taken; choose another."}
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe2", email="JANE.DOE@hospital.org "))
    assert set(caught.value.errors) == {"email"}


def test_a_taken_email_is_told_only_to_a_complete_registration_and_audited(app_env):
    # A form left incomplete on purpose is no free lookup of who has an account.
    _register(GOOD)
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe2", licence_number="", password="x"))
    assert set(caught.value.errors) == {"licence_number", "password"}
    with session_scope() as session:
        (invalid,) = audit.list_events(session, actions=[audit.Action.REGISTER_REFUSED])
    # Audited as invalid (for the address throttle), with the fields' names only.
    assert invalid.detail == {"reason": "invalid licence_number, password"}
    # A complete one learns it, and the administrator sees the refusal in the audit log.
    with pytest.raises(accounts.AccountError) as caught:
        _register(replace(GOOD, username="jdoe2"))
    assert caught.value.errors == {"email": accounts.EMAIL_TAKEN}
    with session_scope() as session:
        refused, _ = audit.list_events(session, actions=[audit.Action.REGISTER_REFUSED])
    assert refused.detail == {"reason": "email taken"} and refused.actor_id is None


def test_create_admin_is_approved_and_follows_the_password_policy(app_env):
    with session_scope() as session:
        admin = accounts.create_admin(
            session, username="root", email="root@clinic.org", password="admin-secret-1"
        )
    assert (admin.role, admin.status, admin.full_name) == ("admin", "approved", "root")
    with pytest.raises(accounts.AccountError, match="at least 10"), session_scope() as session:
        accounts.create_admin(session, username="root2", email="r2@clinic.org", password="short")


def _login(username, password, clock):
    with session_scope() as session:
        return accounts.check_login(session, username=username, password=password, clock=clock)


def test_five_failures_in_fifteen_minutes_lock_the_account_for_fifteen_minutes(make_account):
    make_account("alice")
    clock = FakeClock()
    for attempt in range(5):
        result = _login("alice", "wrong-password", clock)
        assert not result.ok and result.locked_now == (attempt == 4)
        clock.advance(minutes=3)  # 5 failures spread over 12 minutes
    assert not _login("alice", TEST_PASSWORD, clock).ok  # locked: right password refused
    clock.advance(minutes=14)  # 17 minutes after the lock began at minute 12
    assert _login("ALICE ", TEST_PASSWORD, clock).ok


def test_failures_spread_beyond_the_window_do_not_lock(make_account):
    make_account("alice")
    clock = FakeClock()
    for _ in range(8):
        assert not _login("alice", "wrong-password", clock).locked_now
        clock.advance(minutes=4)  # never 5 within 15 minutes
    assert _login("alice", TEST_PASSWORD, clock).ok


def test_a_success_resets_the_failure_count(make_account):
    make_account("alice")
    clock = FakeClock()
    for _ in range(4):
        _login("alice", "wrong-password", clock)
    assert _login("alice", TEST_PASSWORD, clock).ok
    clock.advance(seconds=1)
    for _ in range(4):
        assert not _login("alice", "wrong-password", clock).locked_now
    assert _login("alice", TEST_PASSWORD, clock).ok


def test_lock_survives_a_new_session_and_is_stored_on_the_user(make_account):
    user = make_account("alice")
    clock = FakeClock()
    for _ in range(5):
        _login("alice", "wrong-password", clock)
    with session_scope() as session:
        stored = user_store.get_user(session, user_id=user.id)
    assert stored.locked_until == clock.now + timedelta(minutes=15)


def test_failure_message_never_reveals_whether_the_username_exists(make_account):
    make_account("alice")
    clock = FakeClock()
    unknown = _login("nobody", "wrong-password", clock)
    wrong = _login("alice", "wrong-password", clock)
    for _ in range(4):
        _login("alice", "wrong-password", clock)
    locked = _login("alice", TEST_PASSWORD, clock)
    assert unknown.message == wrong.message == locked.message == accounts.LOGIN_FAILED_MESSAGE
    assert not (unknown.ok or wrong.ok or locked.ok)


def test_every_failure_is_audited(make_account):
    user = make_account("alice")
    clock = FakeClock()
    _login("nobody", "x", clock)
    _login("alice", "x", clock)
    _login("alice", TEST_PASSWORD, clock)
    with session_scope() as session:
        events = audit.list_events(session)
    summary = [(e.action, e.actor_id, e.detail.get("reason")) for e in reversed(events)]
    assert summary == [
        ("login_failed", None, "unknown username"),
        ("login_failed", user.id, "wrong password"),
        ("login", user.id, None),
    ]
    assert events[-1].detail == {"username": "no… (6 characters)", "reason": "unknown username"}
    # A password typed into the username field is not kept whole for administrators to read.
    _login("correct-horse-battery-9", "x", clock)
    with session_scope() as session:
        (typed,) = audit.list_events(session, limit=1)
    assert typed.detail["username"] == "co… (23 characters)"


def test_verify_callback_is_not_called_for_unknown_or_locked_accounts(make_account):
    make_account("alice")
    clock = FakeClock()
    calls = []

    def verify(name, password):
        calls.append(name)
        return False

    with session_scope() as session:
        accounts.check_login(session, username="ghost", password="x", verify=verify, clock=clock)
    for _ in range(5):
        with session_scope() as session:
            accounts.check_login(
                session, username="alice", password="x", verify=verify, clock=clock
            )
    with session_scope() as session:
        accounts.check_login(session, username="alice", password="x", verify=verify, clock=clock)
    assert calls == ["alice"] * 5


def test_admin_decisions(make_account):
    admin = make_account("root", role="admin")
    pending = make_account("bob", status="pending")
    clock = FakeClock()

    def decide(decision, user=pending, actor=admin):
        with session_scope() as session:
            return account_admin.decide(
                session, admin_id=actor.id, user_id=user.id, decision=decision, clock=clock
            )

    assert decide("approve").status == "approved"
    with pytest.raises(accounts.AccountError, match="Cannot reject an account that is approved"):
        decide("reject")
    disabled = decide("disable")
    assert disabled.status == "disabled" and disabled.sessions_revoked_at == clock.now
    assert decide("re-enable").status == "approved"
    with pytest.raises(accounts.AccountError, match="own account"):
        decide("disable", user=admin)
    with pytest.raises(accounts.AccountError, match="administrator"):
        decide("approve", actor=pending)
    with session_scope() as session:
        changes = audit.list_events(session, actions=[audit.Action.STATUS_CHANGE])
    assert [(e.detail["from"], e.detail["to"]) for e in reversed(changes)] == [
        ("pending", "approved"),
        ("approved", "disabled"),
        ("disabled", "approved"),
    ]


def test_two_administrators_deciding_on_one_account_at_once_cannot_both_succeed(make_account):
    """One administrator disables a pending account while another approves it (two Admin
    pages, or a page opened before the first decision). Both read "pending" before either
    wrote: the later save silently replaced the first decision (approved although its
    administrator was told it was disabled), and the log had both changes start from
    "pending". The decision now applies only to the status it was checked against."""
    first, second = make_account("root", role="admin"), make_account("chief", role="admin")
    pending = make_account("bob", status="pending")
    at = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

    def other_admin_disables_meanwhile() -> datetime:
        # Called by decide() once it has checked the status, before it saves.
        with session_scope() as session:
            account_admin.decide(
                session, admin_id=second.id, user_id=pending.id, decision="disable",
                clock=lambda: at,
            )  # fmt: skip
        return at

    with (
        pytest.raises(accounts.AccountError, match="changed meanwhile.*disabled"),
        session_scope() as session,
    ):
        account_admin.decide(
            session, admin_id=first.id, user_id=pending.id, decision="approve",
            clock=other_admin_disables_meanwhile,
        )  # fmt: skip
    with session_scope() as session:
        assert user_store.get_user(session, user_id=pending.id).status == "disabled"
        changes = audit.list_events(session, actions=[audit.Action.STATUS_CHANGE])
    assert [(e.detail["from"], e.detail["to"]) for e in changes] == [("pending", "disabled")]


def test_change_password(make_account):
    user = make_account("alice")
    wrong = pytest.raises(accounts.AccountError, match="current password is wrong")
    with wrong, session_scope() as session:
        account_admin.change_password(
            session, user_id=user.id, current_password="nope", new_password="another-long-1",
            new_password_repeat="another-long-1",
        )  # fmt: skip
    with pytest.raises(accounts.AccountError, match="at least 10"), session_scope() as session:
        account_admin.change_password(
            session, user_id=user.id, current_password=TEST_PASSWORD, new_password="short",
            new_password_repeat="short",
        )  # fmt: skip
    with session_scope() as session:
        account_admin.change_password(
            session, user_id=user.id, current_password=TEST_PASSWORD,
            new_password="another-long-1", new_password_repeat="another-long-1",
        )  # fmt: skip
    clock = FakeClock()
    assert not _login("alice", TEST_PASSWORD, clock).ok
    assert _login("alice", "another-long-1", clock).ok


def test_one_time_passwords_are_random_unambiguous_and_meet_the_policy():
    drawn = {accounts.one_time_password() for _ in range(200)}
    assert len(drawn) == 200
    for password in drawn:
        groups = password.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert set("".join(groups)) <= set(accounts.ONE_TIME_ALPHABET)
        assert not accounts.password_problems(password, password, username="x", email="x@y.org")
    assert not set("0o1li") & set(accounts.ONE_TIME_ALPHABET)


def test_an_admin_resets_a_locked_out_users_forgotten_password(make_account):
    admin = make_account("root", role="admin")
    user = make_account("alice")
    clock = FakeClock()
    for _ in range(5):
        _login("alice", "forgotten-guess", clock)
    assert not _login("alice", TEST_PASSWORD, clock).ok  # locked
    clock.advance(minutes=2)
    with session_scope() as session:
        reset, password = account_admin.reset_password(
            session, admin_id=admin.id, user_id=user.id, clock=clock
        )
        assert reset.must_change_password and reset.sessions_revoked_at == clock.now
    assert password not in reset.password_hash
    # The old password is gone, the lock is lifted, and the failures before it no longer count:
    # four more typos do not lock the account again.
    clock.advance(seconds=1)
    assert not _login("alice", TEST_PASSWORD, clock).ok
    for _ in range(3):
        assert not _login("alice", "typo-typo-typo", clock).locked_now
    assert _login("alice", password, clock).ok
    with session_scope() as session:
        (event,) = audit.list_events(session, actions=[audit.Action.PASSWORD_RESET])
    assert (event.actor_id, event.target_id, event.detail) == (
        admin.id, user.id, {"via": "admin page"},
    )  # fmt: skip
    assert password not in str(event.detail)


def test_a_reset_password_must_be_replaced_and_the_replacement_lifts_the_flag(make_account):
    admin = make_account("root", role="admin")
    user = make_account("alice")
    with session_scope() as session:
        _, password = account_admin.reset_password(session, admin_id=admin.id, user_id=user.id)
    with session_scope() as session:
        changed = account_admin.change_password(
            session, user_id=user.id, current_password=password,
            new_password="my-own-secret-1", new_password_repeat="my-own-secret-1",
        )  # fmt: skip
        assert not changed.must_change_password


def _reset(admin, user, clock):
    with session_scope() as session:
        _, password = account_admin.reset_password(
            session, admin_id=admin.id, user_id=user.id, clock=clock
        )
    return password


def _failures(user_id: int) -> list[str]:
    with session_scope() as session:
        events = audit.list_events(session, actor_id=user_id, actions=[audit.Action.LOGIN_FAILED])
    return [event.detail["reason"] for event in reversed(events)]


def test_a_one_time_password_signs_in_once(make_account):
    # Three sign-ins with it used to succeed: whoever overheard it could come back later.
    admin = make_account("root", role="admin")
    user = make_account("alice")
    clock = FakeClock()
    password = _reset(admin, user, clock)
    clock.advance(minutes=10)
    assert _login("alice", password, clock).ok
    with session_scope() as session:
        stored = user_store.get_user(session, user_id=user.id)
    assert stored.one_time_password_used_at == clock.now and stored.must_change_password
    for _ in range(2):
        clock.advance(minutes=1)
        again = _login("alice", password, clock)
        assert not again.ok and again.message == accounts.ONE_TIME_PASSWORD_SPENT_MESSAGE
        assert "ask your administrator for a new one" in again.message.lower()
    # A wrong password is still just that, with the generic message.
    assert _login("alice", "not-it-at-all", clock).message == accounts.LOGIN_FAILED_MESSAGE
    assert _failures(user.id) == [
        "one-time password already used", "one-time password already used", "wrong password",
    ]  # fmt: skip
    # The session it signed in sets the user's own password with it; that one works as ever.
    with session_scope() as session:
        changed = account_admin.change_password(
            session, user_id=user.id, current_password=password,
            new_password="my-own-secret-1", new_password_repeat="my-own-secret-1", clock=clock,
        )  # fmt: skip
    assert changed.one_time_password_expires_at is None
    assert changed.one_time_password_used_at is None
    for _ in range(2):
        clock.advance(minutes=1)
        assert _login("alice", "my-own-secret-1", clock).ok


def test_a_one_time_password_expires_after_24_hours(make_account):
    admin = make_account("root", role="admin")
    user = make_account("alice")
    bob = make_account("bob")
    clock = FakeClock()
    late = _reset(admin, user, clock)
    in_time = _reset(admin, bob, clock)
    assert timedelta(hours=24) == accounts.ONE_TIME_PASSWORD_LIFETIME
    clock.advance(hours=23, minutes=59)
    assert _login("bob", in_time, clock).ok
    clock.advance(minutes=1)
    expired = _login("alice", late, clock)
    assert not expired.ok and expired.message == accounts.ONE_TIME_PASSWORD_SPENT_MESSAGE
    assert _failures(user.id) == ["one-time password expired"]
    with session_scope() as session:
        (event,) = audit.list_events(session, actor_id=user.id, actions=[audit.Action.LOGIN_FAILED])
    assert account_security.describe(event).description == (
        "Sign-in refused: the one-time password had expired"
    )
    # A new reset gives a new one that works.
    clock.advance(minutes=5)
    assert _login("alice", _reset(admin, user, clock), clock).ok


def test_spent_one_time_passwords_count_towards_the_lockout(make_account):
    admin = make_account("root", role="admin")
    user = make_account("alice")
    clock = FakeClock()
    password = _reset(admin, user, clock)
    clock.advance(days=30)
    results = [_login("alice", password, clock) for _ in range(accounts.MAX_FAILURES)]
    assert [r.locked_now for r in results] == [False] * (accounts.MAX_FAILURES - 1) + [True]
    # Locked: the generic message, as for any locked account.
    assert _login("alice", password, clock).message == accounts.LOGIN_FAILED_MESSAGE
    with session_scope() as session:
        assert audit.list_events(session, involving=user.id, actions=[audit.Action.ACCOUNT_LOCKED])
    # The administrator's new reset lifts the lock and gives a working one.
    clock.advance(minutes=1)
    assert _login("alice", _reset(admin, user, clock), clock).ok


def test_password_resets_are_refused_clearly(make_account):
    admin = make_account("root", role="admin")
    other = make_account("bob")

    def reset(actor, target_id):
        with session_scope() as session:
            return account_admin.reset_password(session, admin_id=actor.id, user_id=target_id)

    with pytest.raises(accounts.AccountError, match="Account page"):
        reset(admin, admin.id)
    with pytest.raises(accounts.AccountError, match="administrator"):
        reset(other, admin.id)
    with pytest.raises(accounts.AccountError, match="does not exist"):
        reset(admin, 9999)
    missing = pytest.raises(accounts.AccountError, match="no account named 'ghost'")
    with missing, session_scope() as session:
        account_admin.reset_password_from_console(session, username="ghost")
    with session_scope() as session:
        stored = user_store.get_user(session, user_id=admin.id)
        assert accounts.verify_password(TEST_PASSWORD, stored.password_hash)
        assert not audit.list_events(session, actions=[audit.Action.PASSWORD_RESET])


def test_wrong_current_passwords_on_the_account_page_count_towards_the_lockout(make_account):
    # Someone at a session left open must not get unlimited guesses at the password there.
    user = make_account("alice")
    clock = FakeClock()

    def change(current: str) -> None:
        with session_scope() as session:
            account_admin.change_password(
                session, user_id=user.id, current_password=current,
                new_password="another-long-1", new_password_repeat="another-long-1", clock=clock,
            )  # fmt: skip

    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(accounts.AccountError, match="current password is wrong"):
            change("a-guess-at-it")
        clock.advance(seconds=10)
    with session_scope() as session:
        failures = audit.list_events(session, actor_id=user.id, actions=[audit.Action.LOGIN_FAILED])
        assert {event.detail["reason"] for event in failures} == {"wrong password (account page)"}
        assert len(failures) == accounts.MAX_FAILURES
        assert audit.list_events(session, involving=user.id, actions=[audit.Action.ACCOUNT_LOCKED])
    # Locked: a further guess is refused as such, and sign-in is refused until the lock ends.
    with pytest.raises(accounts.AccountError, match="try again in 15 minutes"):
        change("another-guess")
    assert not _login("alice", TEST_PASSWORD, clock).ok
    # But the owner, signed in, still changes the password with the right one (whoever locked
    # the account from the sign-in page must not keep them from it).
    change(TEST_PASSWORD)
    clock.advance(minutes=16)
    assert _login("alice", "another-long-1", clock).ok


def test_simultaneous_wrong_passwords_get_no_more_tries_than_the_lockout_allows(make_account):
    # Many browser sessions sending guesses at the same moment: each check waits for the one
    # before it, so the fifth failure locks the account before a sixth guess is looked at.
    user = make_account("alice")
    clock = FakeClock()
    guesses = 3 * accounts.MAX_FAILURES
    start = threading.Barrier(guesses)

    def guess(_):
        start.wait()
        return _login("alice", "a-guess-at-it", clock)

    with ThreadPoolExecutor(guesses) as pool:
        results = list(pool.map(guess, range(guesses)))
    assert not any(result.ok for result in results)
    assert sum(result.locked_now for result in results) == 1
    with session_scope() as session:
        failures = audit.list_events(session, actor_id=user.id, actions=[audit.Action.LOGIN_FAILED])
    reasons = sorted(event.detail["reason"] for event in failures)
    assert reasons.count("wrong password") == accounts.MAX_FAILURES
    assert reasons.count("account locked") == guesses - accounts.MAX_FAILURES


@pytest.mark.parametrize("password", ["x" * 73, "ż" * 40])  # 73 and 80 bytes
def test_a_password_too_long_for_bcrypt_costs_one_full_check_whoever_is_named(
    make_account, monkeypatch, password
):
    # bcrypt takes 72 bytes. The sign-in library's own check raises at once on more, while an
    # unknown username costs a full hash: the time taken told whether the username existed.
    import bcrypt
    from streamlit_authenticator.utilities.hasher import Hasher

    user = make_account("alice")
    checks = []
    real = bcrypt.checkpw

    def counted(secret, hashed):
        checks.append(len(secret))
        return real(secret, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counted)
    clock = FakeClock()

    def library_check(name, secret):
        return Hasher.check_pw(secret, user.password_hash)

    results = []
    for name in ("alice", "nobody"):
        with session_scope() as session:
            results.append(
                accounts.check_login(
                    session, username=name, password=password, verify=library_check, clock=clock
                )
            )
    assert checks == [72, 72]  # one full check each, on what bcrypt can take
    assert [r.message for r in results] == [accounts.LOGIN_FAILED_MESSAGE] * 2
    with session_scope() as session:
        reasons = [e.detail.get("reason") for e in audit.list_events(session)]
    assert sorted(reasons) == ["unknown username", "wrong password"]
