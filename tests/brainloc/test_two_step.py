"""Two-step sign-in on a real database: set-up, codes at sign-in, replay, drift, recovery
codes, lockout, turning it off, administrator and operator resets."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from brainloc import account_admin, accounts, two_step
from brainloc.accounts import AccountError
from brainloc.auth import load_current_user
from db import audit
from db import users as user_store
from db.engine import session_scope
from tests.conftest import TEST_PASSWORD

START = datetime(2026, 5, 4, 9, 0, 10, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def _code(secret: str, at: datetime) -> str:
    # An independent authenticator: pyotp's defaults are what every app uses.
    return pyotp.TOTP(secret).at(at)


def _enable(user_id: int, username: str, clock: Clock) -> tuple[str, list[str]]:
    enrolment = two_step.new_enrolment(username=username)
    with session_scope() as session:
        codes = two_step.enable(
            session,
            user_id=user_id,
            enrolment=enrolment,
            code=_code(enrolment.secret, clock()),
            clock=clock,
        )
    return enrolment.secret, codes


def _login(username: str, clock: Clock, password: str = TEST_PASSWORD):
    with session_scope() as session:
        return accounts.check_login(session, username=username, password=password, clock=clock)


def _second(user_id: int, code: str, clock: Clock, *, checked_at: datetime | None = None):
    with session_scope() as session:
        return two_step.check_second_step(
            session,
            user_id=user_id,
            code=code,
            password_checked_at=checked_at or clock(),
            clock=clock,
        )


def _user(user_id: int):
    with session_scope() as session:
        return user_store.get_user(session, user_id=user_id)


def _events(user_id: int, *actions: str):
    with session_scope() as session:
        return audit.list_events(session, involving=user_id, actions=list(actions))


def test_enrolment_qr_code_and_uri_carry_the_secret(app_env):
    enrolment = two_step.new_enrolment(username="alice")
    assert len(enrolment.secret) == 32  # 160 bits, base32
    parsed = pyotp.parse_uri(enrolment.uri)
    assert parsed.secret == enrolment.secret and parsed.issuer == "BrainLoc"
    assert parsed.name == "alice" and parsed.digits == 6 and parsed.interval == 30
    assert enrolment.grouped_secret.replace(" ", "") == enrolment.secret
    png = enrolment.qr_png()
    assert png.startswith(b"\x89PNG")
    assert two_step.new_enrolment(username="alice").secret != enrolment.secret


def test_a_wrong_code_saves_nothing_and_a_right_one_turns_it_on(make_account):
    alice = make_account("alice")
    clock = Clock()
    enrolment = two_step.new_enrolment(username="alice")
    wrong = f"{(int(_code(enrolment.secret, START)) + 1) % 10**6:06d}"
    for bad in (wrong, "12345", "abcdef", ""):
        with pytest.raises(AccountError, match="authenticator app"), session_scope() as session:
            two_step.enable(session, user_id=alice.id, enrolment=enrolment, code=bad, clock=clock)
    assert _user(alice.id).totp_secret is None
    assert not _events(alice.id, audit.Action.TWO_STEP_ENABLED)
    # Someone else's set-up cannot be confirmed for this account.
    other = two_step.new_enrolment(username="bob")
    with pytest.raises(AccountError, match="another account"), session_scope() as session:
        two_step.enable(
            session, user_id=alice.id, enrolment=other, code=_code(other.secret, START), clock=clock
        )

    secret, codes = _enable(alice.id, "alice", clock)
    stored = _user(alice.id)
    assert stored.totp_secret == secret and stored.totp_enabled_at == START
    assert len(codes) == 10 and len(set(codes)) == 10
    # Only digests are stored; no code appears in the row.
    assert len(stored.recovery_code_hashes) == 10
    assert not any(code in str(stored.recovery_code_hashes) for code in codes)
    # Remembered sign-ins made with the password alone end.
    assert stored.sessions_revoked_at == START
    (event,) = _events(alice.id, audit.Action.TWO_STEP_ENABLED)
    assert event.actor_id == alice.id
    with session_scope() as session:
        assert load_current_user(session, user_id=alice.id).two_step_enabled
    with pytest.raises(AccountError, match="already on"), session_scope() as session:
        two_step.enable(
            session,
            user_id=alice.id,
            enrolment=enrolment,
            code=_code(enrolment.secret, START),
            clock=clock,
        )


def test_sign_in_needs_the_password_then_a_fresh_code(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    first = _login("alice", clock)
    assert first.ok and first.second_step and first.user_id == alice.id
    # The password alone signs nobody in and records no sign-in.
    assert _user(alice.id).last_login_at is None
    assert not _events(alice.id, audit.Action.LOGIN)
    # A wrong password never reaches the second step.
    assert not _login("alice", clock, password="not-the-password").second_step

    result = _second(alice.id, _code(secret, clock()), clock)
    assert result.ok and result.user_id == alice.id
    (login,) = _events(alice.id, audit.Action.LOGIN)
    assert login.detail == {"method": "password+code"}
    assert _user(alice.id).last_login_at == clock()

    # The same code cannot be used again (someone who saw it over the shoulder).
    replay = _second(alice.id, _code(secret, clock()), clock)
    assert not replay.ok and not replay.start_over
    assert "did not work" in replay.message


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-60, False), (-30, True), (30, True), (60, False)]
)
def test_a_phone_clock_off_by_one_step_is_accepted_two_steps_are_not(
    make_account, offset, accepted
):
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=5)
    phone_time = clock() + timedelta(seconds=offset)
    assert _second(alice.id, _code(secret, phone_time), clock).ok is accepted


def test_a_code_long_after_the_password_is_refused(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    checked = clock()
    clock.advance(minutes=two_step.SECOND_STEP_MINUTES, seconds=1)
    late = _second(alice.id, _code(secret, clock()), clock, checked_at=checked)
    assert not late.ok and late.start_over and "sign in again" in late.message


def test_a_code_after_the_password_was_changed_meanwhile_is_refused(make_account):
    # Someone typed the password; before their code, the owner changed it (or ended all
    # sessions). The old password must not finish a sign-in.
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    checked = clock()
    assert _login("alice", clock).second_step
    clock.advance(seconds=40)
    with session_scope() as session:
        account_admin.change_password(
            session, user_id=alice.id, current_password=TEST_PASSWORD,
            new_password="quiet-harbour-lantern", new_password_repeat="quiet-harbour-lantern",
            clock=clock,
        )  # fmt: skip
    clock.advance(seconds=40)
    late = _second(alice.id, _code(secret, clock()), clock, checked_at=checked)
    assert not late.ok and late.start_over and late.message == two_step.CHANGED_MEANWHILE
    assert not _events(alice.id, audit.Action.LOGIN)
    # The new password and a code sign in.
    assert _login("alice", clock, password="quiet-harbour-lantern").second_step
    assert _second(alice.id, _code(secret, clock()), clock).ok


def test_a_code_claimed_by_one_request_is_refused_to_another_that_read_before(make_account):
    # The database decides, not what each request read: the step is claimed by one UPDATE.
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    step = pyotp.TOTP(secret).timecode(clock())
    with session_scope() as first, session_scope() as second:
        for session in (first, second):
            assert user_store.get_user(session, user_id=alice.id).totp_last_step < step
        assert user_store.claim_totp_step(first, user_id=alice.id, step=step)
        first.commit()
        assert not user_store.claim_totp_step(second, user_id=alice.id, step=step)
        assert not user_store.claim_totp_step(second, user_id=alice.id, step=step - 1)
    assert _user(alice.id).totp_last_step == step


def _at_once(count: int, attempt):
    """Run ``attempt()`` in ``count`` threads released together; their results."""
    start = threading.Barrier(count)

    def run(_):
        start.wait()
        return attempt()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_simultaneous_sign_ins_with_one_code_accept_it_once(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, recovery = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    code = _code(secret, clock())
    results = _at_once(4, lambda: _second(alice.id, code, clock))
    assert sum(result.ok for result in results) == 1
    clock.advance(minutes=1)
    results = _at_once(4, lambda: _second(alice.id, recovery[0], clock))
    assert sum(result.ok for result in results) == 1
    with session_scope() as session:
        assert two_step.status(session, user_id=alice.id).recovery_codes_left == 9
    assert len(_events(alice.id, audit.Action.LOGIN)) == 2


def test_simultaneous_guesses_get_no_more_tries_than_the_lockout_allows(make_account):
    alice = make_account("alice")
    clock = Clock()
    _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    guesses = 3 * accounts.MAX_FAILURES
    results = _at_once(guesses, lambda: _second(alice.id, "000000", clock))
    assert not any(result.ok for result in results)
    # Only MAX_FAILURES guesses were looked at; the rest met the lock.
    assert sum(result.locked_now for result in results) == 1
    failures = _events(alice.id, audit.Action.LOGIN_FAILED)
    assert len(failures) == accounts.MAX_FAILURES


def test_recovery_codes_work_once_each(make_account):
    alice = make_account("alice")
    clock = Clock()
    _, codes = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    typed = codes[3].upper().replace("-", " ")  # case, spaces and hyphens do not matter
    assert _second(alice.id, typed, clock).ok
    (login,) = _events(alice.id, audit.Action.LOGIN)
    assert login.detail == {"method": "password+recovery code", "recovery_codes_left": 9}
    assert not _second(alice.id, codes[3], clock).ok
    assert _second(alice.id, codes[4], clock).ok
    with session_scope() as session:
        assert two_step.status(session, user_id=alice.id).recovery_codes_left == 8


def test_wrong_codes_lock_the_account_like_wrong_passwords(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    results = [_second(alice.id, "000000", clock) for _ in range(accounts.MAX_FAILURES)]
    assert [r.locked_now for r in results] == [False] * 4 + [True]
    assert results[-1].start_over and results[-1].message == accounts.LOGIN_FAILED_MESSAGE
    failures = _events(alice.id, audit.Action.LOGIN_FAILED)
    assert {e.detail["reason"] for e in failures} == {"wrong two-step code"}
    # Locked: even the right code is refused now, and so is the password.
    assert not _second(alice.id, _code(secret, clock()), clock).ok
    assert not _login("alice", clock).ok
    clock.advance(minutes=16)
    assert _login("alice", clock).second_step
    assert _second(alice.id, _code(secret, clock()), clock).ok


def test_renewing_recovery_codes_needs_a_code_and_replaces_them(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, old = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    with pytest.raises(AccountError, match="authenticator app"), session_scope() as session:
        two_step.renew_recovery_codes(session, user_id=alice.id, code=old[0], clock=clock)
    # The wrong code was recorded as a failed sign-in, although the change was refused.
    (failure,) = _events(alice.id, audit.Action.LOGIN_FAILED)
    assert failure.detail["reason"] == "wrong two-step code (account page)"
    with session_scope() as session:
        new = two_step.renew_recovery_codes(
            session, user_id=alice.id, code=_code(secret, clock()), clock=clock
        )
    assert len(new) == 10 and not set(new) & set(old)
    clock.advance(minutes=1)
    assert not _second(alice.id, old[0], clock).ok
    assert _second(alice.id, new[0], clock).ok
    assert _events(alice.id, audit.Action.RECOVERY_CODES_RENEWED)


def test_turning_it_off_needs_the_password_and_a_code(make_account):
    alice = make_account("alice")
    clock = Clock()
    secret, codes = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    with pytest.raises(AccountError, match="password is wrong"), session_scope() as session:
        two_step.disable(
            session, user_id=alice.id, password="nope", code=_code(secret, clock()), clock=clock
        )
    with pytest.raises(AccountError, match="authenticator app"), session_scope() as session:
        two_step.disable(
            session, user_id=alice.id, password=TEST_PASSWORD, code="123456", clock=clock
        )
    assert _user(alice.id).totp_secret == secret
    # Both refusals count towards the lockout, like wrong guesses at the sign-in page.
    reasons = sorted(e.detail["reason"] for e in _events(alice.id, audit.Action.LOGIN_FAILED))
    assert reasons == ["wrong password (account page)", "wrong two-step code (account page)"]
    with session_scope() as session:
        two_step.disable(
            session, user_id=alice.id, password=TEST_PASSWORD, code=codes[0], clock=clock
        )
    stored = _user(alice.id)
    assert stored.totp_secret is None and stored.recovery_code_hashes is None
    (event,) = _events(alice.id, audit.Action.TWO_STEP_DISABLED)
    assert event.detail == {"via": "account page"}
    first = _login("alice", clock)
    assert first.ok and not first.second_step


def test_an_administrator_resets_another_accounts_two_step_sign_in(make_account):
    admin = make_account("root", role="admin")
    alice = make_account("alice")
    clock = Clock()
    _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    with pytest.raises(AccountError, match="Account page"), session_scope() as session:
        two_step.reset_by_admin(session, admin_id=admin.id, user_id=admin.id, clock=clock)
    with pytest.raises(AccountError, match="administrator"), session_scope() as session:
        two_step.reset_by_admin(session, admin_id=alice.id, user_id=alice.id, clock=clock)
    with session_scope() as session:
        two_step.reset_by_admin(session, admin_id=admin.id, user_id=alice.id, clock=clock)
    stored = _user(alice.id)
    assert stored.totp_secret is None and stored.sessions_revoked_at == clock()
    (event,) = _events(alice.id, audit.Action.TWO_STEP_DISABLED)
    assert (event.actor_id, event.detail) == (admin.id, {"via": "admin page"})
    with pytest.raises(AccountError, match="not on"), session_scope() as session:
        two_step.reset_by_admin(session, admin_id=admin.id, user_id=alice.id, clock=clock)


def test_the_required_policy_applies_to_approved_accounts_of_the_role(make_account, monkeypatch):
    from brainloc.settings import get_settings

    admin = make_account("root", role="admin")
    alice = make_account("alice")
    bob = make_account("bob", status="pending")

    def flags(user_id):
        with session_scope() as session:
            user = load_current_user(session, user_id=user_id)
        return user.two_step_required, user.account_page_only

    assert flags(admin.id) == flags(alice.id) == (False, False)
    monkeypatch.setenv("BRAINLOC_REQUIRE_TWO_STEP", "admins")
    get_settings.cache_clear()
    assert flags(admin.id) == (True, True) and flags(alice.id) == (False, False)
    monkeypatch.setenv("BRAINLOC_REQUIRE_TWO_STEP", "everyone")
    get_settings.cache_clear()
    assert flags(alice.id) == (True, True)
    assert flags(bob.id) == (False, False)  # pending: sees only the status page anyway
    _enable(alice.id, "alice", Clock())
    assert flags(alice.id) == (True, False)
    monkeypatch.setenv("BRAINLOC_REQUIRE_TWO_STEP", "sometimes")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="BRAINLOC_REQUIRE_TWO_STEP must be one of"):
        get_settings()


def test_the_operator_resets_two_step_sign_in_from_the_command_line(make_account, app_env):
    make_account("root", role="admin")
    alice = make_account("alice")
    _enable(alice.id, "alice", Clock())

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "brainloc", "reset-two-step", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    done = run("--username", "Alice")
    assert done.returncode == 0, done.stderr
    assert "Two-step sign-in of 'alice' is off" in done.stdout
    assert _user(alice.id).totp_secret is None
    (event,) = _events(alice.id, audit.Action.TWO_STEP_DISABLED)
    assert (event.actor_id, event.detail) == (None, {"via": "command line"})
    again = run("--username", "alice")
    assert again.returncode == 2 and "not on" in again.stderr
    missing = run("--username", "nobody")
    assert missing.returncode == 2 and "no account named 'nobody'" in missing.stderr


def test_the_owner_reads_their_own_security_record_only(make_account):
    from brainloc.account_security import security_events

    admin = make_account("root", role="admin")
    alice = make_account("alice")
    bob = make_account("bob")
    clock = Clock()
    secret, codes = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    assert _login("alice", clock).second_step
    _second(alice.id, "000000", clock)  # someone with her password, without her phone
    _second(alice.id, codes[0], clock)
    _login("bob", clock, password="not-bobs")
    with session_scope() as session:
        two_step.reset_by_admin(session, admin_id=admin.id, user_id=alice.id, clock=clock)

    with session_scope() as session:
        alices = security_events(session, user_id=alice.id)
        bobs = security_events(session, user_id=bob.id)
        admins = security_events(session, user_id=admin.id)
    assert [e.description for e in alices] == [
        "Two-step sign-in turned off by an administrator",
        "Signed in with the password and a recovery code (9 left)",
        "Sign-in refused: right password, wrong two-step code",
        "Two-step sign-in turned on",
    ]
    assert [e.alert for e in alices] == [False, False, True, False]
    assert [e.description for e in bobs] == ["Sign-in refused: wrong password"]
    # What the administrator did to Alice's account is in hers, not in the administrator's.
    assert admins == []


def test_a_right_password_that_no_code_followed_is_flagged(make_account):
    from brainloc.account_security import security_events

    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    asked = clock()
    assert _login("alice", clock).second_step  # someone with her password, stopped by the code
    (event,) = _events(alice.id, audit.Action.SECOND_STEP_ASKED)
    assert (event.actor_id, event.target_id) == (alice.id, alice.id)

    def newest(minutes: float) -> tuple[str, bool]:
        with session_scope() as session:
            events = security_events(
                session, user_id=alice.id, clock=lambda: asked + timedelta(minutes=minutes)
            )
        return events[0].description, events[0].alert

    assert newest(1) == ("Right password; waiting for the two-step code", False)
    assert newest(two_step.SECOND_STEP_MINUTES + 1) == (
        "Right password, but no two-step code followed",
        True,
    )
    # Her own sign-in an hour later does not explain it away; it has its own line.
    clock.advance(hours=1)
    assert _login("alice", clock).second_step
    assert _second(alice.id, _code(secret, clock()), clock).ok
    with session_scope() as session:
        lines = [(e.description, e.alert) for e in security_events(session, user_id=alice.id)]
    assert lines[:2] == [
        ("Signed in with the password and an app code", False),
        ("Right password, but no two-step code followed", True),
    ]


def test_end_other_sessions_ends_older_sessions_and_keeps_later_ones(make_account):
    from brainloc.account_security import end_other_sessions, security_events

    alice = make_account("alice")
    clock = Clock()
    with session_scope() as session:
        before = load_current_user(session, user_id=alice.id)
    assert before.signed_in_still(None) and before.signed_in_still(START)
    with session_scope() as session:
        end_other_sessions(session, user_id=alice.id, clock=clock)
        after = load_current_user(session, user_id=alice.id)
        (event,) = security_events(session, user_id=alice.id)
    assert after.sessions_ended_at == START
    assert not after.signed_in_still(None)
    assert not after.signed_in_still(START - timedelta(hours=1))
    assert not after.signed_in_still(START)
    assert after.signed_in_still(START + timedelta(seconds=1))
    assert event.description == "Ended all other sessions"
    # Remembered sign-ins end too.
    assert _user(alice.id).sessions_revoked_at == START


def test_a_reset_one_time_password_with_two_step_sign_in_signs_in_once(make_account):
    # The code is asked after it (a reset leaves two-step sign-in on); the sign-in its code
    # finishes spends it, and a second browser that checked it meanwhile cannot finish.
    admin = make_account("root", role="admin")
    alice = make_account("alice")
    clock = Clock()
    secret, _ = _enable(alice.id, "alice", clock)
    clock.advance(minutes=1)
    with session_scope() as session:
        _, password = account_admin.reset_password(
            session, admin_id=admin.id, user_id=alice.id, clock=clock
        )
    clock.advance(minutes=1)
    here, there = _login("alice", clock, password), _login("alice", clock, password)
    assert here.second_step and there.second_step
    assert _second(alice.id, _code(secret, clock()), clock).ok
    assert _user(alice.id).one_time_password_used_at == clock()
    clock.advance(seconds=30)
    late = _second(
        alice.id, _code(secret, clock()), clock, checked_at=clock() - timedelta(seconds=30)
    )
    assert not late.ok and late.start_over
    assert late.message == accounts.ONE_TIME_PASSWORD_SPENT_MESSAGE
    again = _login("alice", clock, password)
    assert not again.ok and not again.second_step
    assert again.message == accounts.ONE_TIME_PASSWORD_SPENT_MESSAGE
    reasons = [e.detail["reason"] for e in _events(alice.id, audit.Action.LOGIN_FAILED)]
    assert reasons == ["one-time password already used"] * 2
