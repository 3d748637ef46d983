"""Two-step sign-in: after the password, a code from the user's authenticator app.

The codes are time-based one-time passwords (TOTP, RFC 6238, by ``pyotp``): 6 digits, a new
one every 30 seconds, HMAC-SHA1, which every common authenticator app (Google or Microsoft
Authenticator, FreeOTP, Aegis, 1Password …) reads from the QR code :class:`Enrolment` draws.

Rules, all enforced here (pure logic over :mod:`db`, no Streamlit):

* **Turning it on** needs a code from the app, so nobody locks themselves out with a secret
  their phone never stored. Until then nothing is saved. Turning it on ends the account's
  other sessions and remembered sign-ins (they signed in with the password alone) and returns
  ten **recovery codes**, shown once and stored only as SHA-256 digests; each works once,
  instead of a code, for a lost phone.
* **Signing in**: :func:`brainloc.accounts.check_login` accepts the password and asks for the
  second step; :func:`check_second_step` accepts a code for the current time step or one step
  either side (a phone's clock may be off by up to about 30 seconds), never a code for a step
  already used (a code seen over someone's shoulder cannot be replayed), or a recovery code.
  A wrong code counts as a failed sign-in towards the same lockout as a wrong password
  (5 within 15 minutes), so guessing is bounded by it, and towards the client address's
  throttle (:mod:`brainloc.sign_in_throttle`); the second step must follow the password
  within :data:`SECOND_STEP_MINUTES`.
* **Turning it off** needs the password and a code (or a recovery code). A user who lost the
  phone and their recovery codes asks an administrator (:func:`reset_by_admin`, the Admin
  page) or the server's operator (``python -m brainloc reset-two-step``).
* A clinic can require it (``BRAINLOC_REQUIRE_TWO_STEP``: ``admins`` or ``everyone``): an
  account that must use it and does not yet sees only the Account page (:func:`required_for`).

The secret is stored as it is in the database (the app must read it to check codes), like the
scans themselves: protect the database and its backups accordingly.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

import pyotp
import segno
from sqlmodel import Session

from brainloc.account_admin import other_account, require_admin
from brainloc.accounts import (
    LOGIN_FAILED_MESSAGE,
    AccountError,
    Clock,
    LoginResult,
    end_sign_ins,
    existing_user,
    found_user,
    one_account_at_a_time,
    one_time_password,
    one_time_password_refusal,
    record_login_failure,
    record_sign_in,
    refuse_counted,
    refuse_spent_one_time_password,
    refuse_while_locked,
    save_with_event,
    spend_one_time_password,
    user_named,
    verify_password,
)
from brainloc.sign_in_throttle import record_throttled, throttled_message, throttled_until
from db import users as user_store
from db.audit import Action
from db.models import User
from db.types import utc_now

ISSUER = "BrainLoc"
DIGITS = 6
PERIOD_SECONDS = 30
#: Codes of this many time steps before or after the current one are accepted too.
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
#: The code must follow the password within this time, or the password is asked again.
SECOND_STEP_MINUTES = 5

CODE_RE = re.compile(r"^\d{6}$")
#: Shown for a code the app did not produce when turning two-step sign-in on or off.
WRONG_CODE = (
    "That code is not the one your authenticator app shows now. Type the 6 digits shown "
    "for BrainLoc, before they change; if it keeps failing, check that the phone sets its "
    "clock automatically."
)
#: Shown for a wrong password when turning two-step sign-in off.
WRONG_PASSWORD = "The password is wrong."
#: Shown for a wrong code at sign-in (the password was right, so it may say which failed).
WRONG_SIGN_IN_CODE = (
    "That code did not work. Type the 6 digits your authenticator app shows for BrainLoc now, "
    "or one of your recovery codes. Repeated wrong codes lock the account for 15 minutes."
)
TOO_LATE = (
    f"The code came more than {SECOND_STEP_MINUTES} minutes after the password: sign in again."
)
#: Shown when the account's sign-ins were ended (a password change, two-step sign-in reset …)
#: between the password and the code.
CHANGED_MEANWHILE = (
    "This account's sign-in was changed after you typed the password (a new password, or its "
    "sessions were ended): sign in again."
)


@dataclass(frozen=True)
class Enrolment:
    """A new secret, not yet saved: what the user's app must store before :func:`enable`."""

    secret: str
    username: str

    @property
    def uri(self) -> str:
        """The ``otpauth://`` URI the QR code carries (issuer BrainLoc, the username)."""
        return _totp(self.secret).provisioning_uri(name=self.username, issuer_name=ISSUER)

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, for typing into an app that cannot scan."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))

    def qr_png(self, *, scale: int = 5) -> bytes:
        """The QR code of :attr:`uri` as PNG bytes (error correction M, quiet zone kept)."""
        buffer = io.BytesIO()
        segno.make(self.uri, error="m", micro=False).save(buffer, kind="png", scale=scale)
        return buffer.getvalue()


def new_enrolment(*, username: str) -> Enrolment:
    """A fresh random 160-bit secret for ``username`` (RFC 4226's recommended length)."""
    return Enrolment(secret=pyotp.random_base32(length=32), username=username)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS, issuer=ISSUER)


def normalise_code(code: str) -> str:
    """A typed code without spaces and hyphens, lower-case (``"123 456"`` -> ``"123456"``)."""
    return re.sub(r"[\s-]+", "", code or "").lower()


def current_code(secret: str, *, at: datetime) -> str:
    """The code an app shows for ``secret`` at ``at`` (used by the tests and the demo)."""
    return _totp(secret).at(at)


def _matching_step(secret: str, code: str, *, at: datetime, after: int | None) -> int | None:
    """The time step ``code`` belongs to (within the drift), if it is later than ``after``."""
    if not CODE_RE.match(code):
        return None
    totp = _totp(secret)
    now_step = totp.timecode(at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code) and (after is None or step > after):
            return step
    return None


def _digest(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def _new_recovery_codes(user: User) -> list[str]:
    """Ten new recovery codes (about 79 bits each); only their digests are kept."""
    codes = [one_time_password() for _ in range(RECOVERY_CODE_COUNT)]
    user.recovery_code_hashes = [_digest(code) for code in codes]
    return codes


def _use_recovery_code(user: User, code: str) -> bool:
    """Accept and spend one of ``user``'s recovery codes."""
    digest = _digest(code)
    remaining = list(user.recovery_code_hashes or [])
    for stored in remaining:
        if hmac.compare_digest(stored, digest):
            remaining.remove(stored)
            user.recovery_code_hashes = remaining
            return True
    return False


def _accept(session: Session, user: User, code: str, *, at: datetime) -> str | None:
    """Accept ``code`` as an app code or a recovery code; the kind accepted, else None.

    An accepted app code's time step is remembered, so it cannot be used again: by one
    conditional update (:func:`db.users.claim_totp_step`), so not even by a request that read
    the account at the same moment.
    """
    typed = normalise_code(code)
    step = _matching_step(user.totp_secret or "", typed, at=at, after=user.totp_last_step)
    if step is not None and user_store.claim_totp_step(session, user_id=user.id, step=step):
        return "code"
    if _use_recovery_code(user, typed):
        return "recovery code"
    return None


def recovery_codes_left(user: User) -> int:
    """How many unused recovery codes ``user`` has."""
    return len(user.recovery_code_hashes or [])


@dataclass(frozen=True)
class TwoStepStatus:
    """What the Account page shows about an account's two-step sign-in."""

    enabled_at: datetime | None
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        """Two-step sign-in is on."""
        return self.enabled_at is not None


def status(session: Session, *, user_id: int) -> TwoStepStatus:
    """The account's two-step sign-in: since when it is on, and its unused recovery codes."""
    user = existing_user(session, user_id=user_id)
    if not user.totp_secret:
        return TwoStepStatus(enabled_at=None, recovery_codes_left=0)
    return TwoStepStatus(
        enabled_at=user.totp_enabled_at, recovery_codes_left=recovery_codes_left(user)
    )


def enable(
    session: Session, *, user_id: int, enrolment: Enrolment, code: str, clock: Clock = utc_now
) -> list[str]:
    """Turn two-step sign-in on with ``enrolment``'s secret once ``code`` proves the app has
    it; returns the ten recovery codes (shown once). Nothing is saved when it is refused.
    Committed before it returns."""
    with one_account_at_a_time(session, user_id) as found:
        user = found_user(found)
        if user.totp_secret:
            raise AccountError({"code": "Two-step sign-in is already on for this account."})
        if enrolment.username != user.username:
            raise AccountError({"code": "This set-up belongs to another account; start again."})
        now = clock()
        step = _matching_step(enrolment.secret, normalise_code(code), at=now, after=None)
        if step is None:
            raise AccountError({"code": WRONG_CODE})
        user.totp_secret = enrolment.secret
        user.totp_enabled_at = now
        user.totp_last_step = step
        codes = _new_recovery_codes(user)
        # Browsers signed in with the password alone must sign in again, with a code.
        end_sign_ins(user, at=now)
        user.updated_at = now
        save_with_event(
            session, user=user, action=Action.TWO_STEP_ENABLED, actor_id=user.id, at=now
        )
    return codes


def _changing(found: User | None, *, at: datetime) -> User:
    """The account whose two-step sign-in its owner changes: it exists, has two-step sign-in
    on and is not locked; refused with a message otherwise."""
    user = found_user(found)
    if not user.totp_secret:
        raise AccountError({"code": "Two-step sign-in is not on for this account."})
    refuse_while_locked(user, at=at, field="code")
    return user


def _wrong_code(session: Session, *, user: User, at: datetime) -> NoReturn:
    """Refuse a wrong code typed on the Account page; it counts towards the lockout."""
    refuse_counted(
        session, user=user, at=at, field="code", message=WRONG_CODE, reason="wrong two-step code"
    )


def clear_two_step(user: User) -> None:
    """Forget the account's two-step sign-in: secret, used step and recovery codes."""
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.recovery_code_hashes = None


def disable(
    session: Session, *, user_id: int, password: str, code: str, clock: Clock = utc_now
) -> User:
    """The user turns two-step sign-in off, with their password and a code (or a recovery
    code); audited. Refused with a message when either is wrong; nothing changes then, but
    the wrong password or code counts towards the lockout. Committed before it returns."""
    with one_account_at_a_time(session, user_id) as found:
        now = clock()
        user = _changing(found, at=now)
        if not verify_password(password, user.password_hash):
            refuse_counted(
                session, user=user, at=now, field="password", message=WRONG_PASSWORD,
                reason="wrong password",
            )  # fmt: skip
        if _accept(session, user, code, at=now) is None:
            _wrong_code(session, user=user, at=now)
        clear_two_step(user)
        user.updated_at = now
        save_with_event(
            session, user=user, action=Action.TWO_STEP_DISABLED, actor_id=user.id, at=now,
            detail={"via": "account page"},
        )  # fmt: skip
    return user


def renew_recovery_codes(
    session: Session, *, user_id: int, code: str, clock: Clock = utc_now
) -> list[str]:
    """Replace every recovery code with ten new ones, after a code from the app; audited.
    The old codes stop working. Committed before it returns."""
    with one_account_at_a_time(session, user_id) as found:
        now = clock()
        user = _changing(found, at=now)
        step = _matching_step(
            user.totp_secret, normalise_code(code), at=now, after=user.totp_last_step
        )
        if step is None or not user_store.claim_totp_step(session, user_id=user.id, step=step):
            _wrong_code(session, user=user, at=now)
        codes = _new_recovery_codes(user)
        user.updated_at = now
        save_with_event(
            session, user=user, action=Action.RECOVERY_CODES_RENEWED, actor_id=user.id, at=now
        )
    return codes


def check_second_step(
    session: Session,
    *,
    user_id: int,
    code: str,
    password_checked_at: datetime,
    clock: Clock = utc_now,
    client_address: str | None = None,
) -> LoginResult:
    """Finish a sign-in whose password :func:`brainloc.accounts.check_login` accepted.

    Success signs the user in (audited as ``login`` with method ``password+code`` or
    ``password+recovery code``). A wrong code is a failed sign-in (``wrong two-step code``)
    towards the lockout; every failure shows the same message as a wrong password. A locked
    account, an account whose two-step sign-in was turned off meanwhile or whose sign-ins were
    ended after ``password_checked_at`` (its password changed, say), or a password checked
    more than :data:`SECOND_STEP_MINUTES` ago is refused without looking at the code; so is a
    reset's one-time password that expired or was used meanwhile (as a failed sign-in,
    :func:`brainloc.accounts.refuse_spent_one_time_password`). Success spends it.
    Requests for one account take turns; the result is committed before it returns.

    ``client_address`` (None when unknown) is recorded with a failure and counts towards its
    throttle, as at the password (:mod:`brainloc.sign_in_throttle`); a throttled address is
    refused first, without looking at the code, and must start over.
    """
    with one_account_at_a_time(session, user_id) as user:
        now = clock()
        until = throttled_until(session, address=client_address, at=now)
        if until is not None:
            record_throttled(session, address=client_address, at=now, user_id=user_id)
            return LoginResult(ok=False, message=throttled_message(until, at=now), start_over=True)
        if user is None or not user.totp_secret:
            return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE, start_over=True)
        if now - password_checked_at > timedelta(minutes=SECOND_STEP_MINUTES):
            return LoginResult(ok=False, message=TOO_LATE, start_over=True)
        if user_store.sessions_ended(user.sessions_ended_at, password_checked_at):
            return LoginResult(ok=False, message=CHANGED_MEANWHILE, start_over=True)
        if user.locked_until is not None and now < user.locked_until:
            return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE, start_over=True)
        spent = one_time_password_refusal(user, at=now)
        if spent is not None:  # it expired meanwhile, or another sign-in used it
            return refuse_spent_one_time_password(
                session, user=user, at=now, why=spent, client_address=client_address
            )
        kind = _accept(session, user, code, at=now)
        if kind is None:
            locked_now = record_login_failure(
                session, user=user, at=now, reason="wrong two-step code",
                client_address=client_address,
            )  # fmt: skip
            if locked_now:
                return LoginResult(
                    ok=False, message=LOGIN_FAILED_MESSAGE, locked_now=True, start_over=True
                )
            return LoginResult(ok=False, message=WRONG_SIGN_IN_CODE)
        spend_one_time_password(user, at=now)
        detail: dict[str, object] = {"method": f"password+{kind}"}
        if kind == "recovery code":
            detail["recovery_codes_left"] = recovery_codes_left(user)
        return record_sign_in(session, user=user, at=now, detail=detail)


def _reset(session: Session, *, user: User, actor_id: int | None, via: str, clock: Clock) -> User:
    if not user.totp_secret:
        raise AccountError({"user": f"Two-step sign-in is not on for '{user.username}'."})
    now = clock()
    clear_two_step(user)
    end_sign_ins(user, at=now)
    user.updated_at = now
    return save_with_event(
        session, user=user, action=Action.TWO_STEP_DISABLED, actor_id=actor_id, at=now,
        detail={"via": via},
    )  # fmt: skip


def reset_by_admin(
    session: Session, *, admin_id: int, user_id: int, clock: Clock = utc_now
) -> User:
    """An administrator turns another account's two-step sign-in off (a lost phone and lost
    recovery codes), after confirming who asks; the account's sessions and remembered sign-ins
    end. If the
    clinic requires two-step sign-in, the owner sets it up again at the next sign-in."""
    admin = require_admin(session, admin_id)
    user = other_account(
        session, admin, user_id, own="Turn your own two-step sign-in off on the Account page."
    )
    return _reset(session, user=user, actor_id=admin.id, via="admin page", clock=clock)


def reset_from_console(session: Session, *, username: str, clock: Clock = utc_now) -> User:
    """The server's operator turns any account's two-step sign-in off, the only
    administrator's included (``python -m brainloc reset-two-step``)."""
    user = user_named(session, username=username)
    return _reset(session, user=user, actor_id=None, via="command line", clock=clock)
