"""An account's own security record, for its owner: recent sign-ins and account changes, and
"End all other sessions".

The Account page lists what the audit log holds about the account itself (events whose
target is the account: sign-ins and refusals, lockouts, sign-outs, password and two-step
changes, status decisions), so that its owner can notice a sign-in that was not theirs. The
query selects by the account as target, so nobody reads another account's record here.
:func:`end_other_sessions` ends every other sign-in of the account, the open browser sessions
included (:func:`brainloc.accounts.end_sign_ins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from brainloc.accounts import Clock, end_sign_ins, existing_user, save_with_event
from brainloc.sign_in_throttle import THROTTLED_REASON
from brainloc.two_step import SECOND_STEP_MINUTES
from db import audit
from db.audit import TARGET_USER, Action
from db.models import AuditEvent, User
from db.types import utc_now

#: The actions the owner's security record lists.
SECURITY_ACTIONS = (
    Action.LOGIN,
    Action.SECOND_STEP_ASKED,
    Action.LOGIN_FAILED,
    Action.ACCOUNT_LOCKED,
    Action.LOGOUT,
    Action.PASSWORD_CHANGE,
    Action.PASSWORD_RESET,
    Action.TWO_STEP_ENABLED,
    Action.TWO_STEP_DISABLED,
    Action.RECOVERY_CODES_RENEWED,
    Action.SESSIONS_ENDED,
    Action.STATUS_CHANGE,
    Action.REGISTER,
    Action.ADMIN_CREATED,
)

_SIGN_IN_METHODS = {
    "password": "Signed in with the password",
    "password+code": "Signed in with the password and an app code",
    "password+recovery code": "Signed in with the password and a recovery code",
    "cookie": "Signed in by a remembered browser",
}
_FAILURES = {
    "wrong password": "Sign-in refused: wrong password",
    "wrong two-step code": "Sign-in refused: right password, wrong two-step code",
    "wrong two-step code (account page)": "Wrong two-step code typed on the Account page",
    "wrong password (account page)": "Wrong password typed on the Account page",
    "account locked": "Sign-in refused: the account was locked",
    "one-time password already used": "Sign-in refused: the one-time password was used already",
    "one-time password expired": "Sign-in refused: the one-time password had expired",
    "sign-in cookie was revoked": "A remembered sign-in that had been ended was presented again",
    "sign-in cookie issued in the future": "A forged remembered sign-in was refused",
    "account is locked": "A remembered sign-in was refused: the account was locked",
    # Listed only after a right password (the second step names the account; the password
    # step does not look the account up when it refuses an address).
    THROTTLED_REASON: (
        "Right password, but the sign-in was refused: too many failed sign-ins had come from "
        "its network address"
    ),
}
_BY = {"admin page": "by an administrator", "command line": "by the server's operator"}
_SIMPLE = {
    Action.ACCOUNT_LOCKED: "Account locked for 15 minutes after repeated failed sign-ins",
    Action.PASSWORD_CHANGE: "Password changed",
    Action.TWO_STEP_ENABLED: "Two-step sign-in turned on",
    Action.RECOVERY_CODES_RENEWED: "New recovery codes made",
    Action.SESSIONS_ENDED: "Ended all other sessions",
    Action.REGISTER: "Registered",
    Action.ADMIN_CREATED: "Administrator account created",
}


@dataclass(frozen=True)
class SecurityEvent:
    """One line of the owner's security record."""

    at: datetime
    description: str
    #: A sign of someone else at work: a right password with a wrong code or with no code at
    #: all, or a lockout.
    alert: bool = False


def describe(event: AuditEvent) -> SecurityEvent:
    """The event in words for the account's owner."""
    detail = event.detail or {}
    action = event.action
    alert = False
    if action == Action.LOGIN:
        text = _SIGN_IN_METHODS.get(detail.get("method", ""), "Signed in")
        if "recovery_codes_left" in detail:
            text += f" ({detail['recovery_codes_left']} left)"
    elif action == Action.LOGIN_FAILED:
        reason = detail.get("reason", "")
        text = _FAILURES.get(reason, "Sign-in refused")
        alert = reason in (
            "wrong two-step code",
            "sign-in cookie issued in the future",
            THROTTLED_REASON,
        )
    elif action == Action.LOGOUT:
        text = "Signed out after inactivity" if detail.get("reason") == "idle" else "Signed out"
        if detail.get("cookie") == "refused":
            text += " (a remembered sign-in was refused)"
    elif action in (Action.PASSWORD_RESET, Action.TWO_STEP_DISABLED):
        what = (
            "Password reset" if action == Action.PASSWORD_RESET else "Two-step sign-in turned off"
        )
        by = _BY.get(detail.get("via", ""))
        text = f"{what} {by}" if by else what
    elif action == Action.STATUS_CHANGE:
        text = f"Account {detail.get('to', 'changed')} by an administrator"
    else:
        text = _SIMPLE.get(action, action.replace("_", " ").capitalize())
        alert = action == Action.ACCOUNT_LOCKED
    return SecurityEvent(at=event.created_at, description=text, alert=alert)


def _code_sign_in(event: AuditEvent) -> bool:
    """A sign-in that finished a two-step sign-in (an app or recovery code after a password)."""
    method = str((event.detail or {}).get("method", ""))
    return event.action == Action.LOGIN and method.startswith("password+")


def _password_without_code(
    asked: AuditEvent, newer: list[AuditEvent], *, now: datetime
) -> SecurityEvent | None:
    """How a right password for two-step sign-in (``second_step_asked``) reads, given the
    account's newer events: nothing when a sign-in followed within the code's time (the
    sign-in's own line says it), waiting while that time lasts, else flagged, since whoever
    typed it knows the password."""
    deadline = asked.created_at + timedelta(minutes=SECOND_STEP_MINUTES)
    if any(_code_sign_in(e) and asked.created_at <= e.created_at <= deadline for e in newer):
        return None
    if now <= deadline:
        return SecurityEvent(asked.created_at, "Right password; waiting for the two-step code")
    return SecurityEvent(
        asked.created_at, "Right password, but no two-step code followed", alert=True
    )


def security_events(
    session: Session, *, user_id: int, limit: int = 20, clock: Clock = utc_now
) -> list[SecurityEvent]:
    """The newest ``limit`` security events of the account ``user_id`` (events whose target is
    that account), newest first. A right password followed by its code shows as the sign-in
    alone; one that no code followed is flagged."""
    # Twice as many: a right password followed by its code is one line, not two.
    events = audit.list_events(
        session, actions=SECURITY_ACTIONS, target=(TARGET_USER, user_id), limit=2 * limit
    )
    now = clock()
    shown = []
    for index, event in enumerate(events):
        if event.action == Action.SECOND_STEP_ASKED:
            line = _password_without_code(event, events[:index], now=now)
            if line is not None:
                shown.append(line)
        else:
            shown.append(describe(event))
    return shown[:limit]


def end_other_sessions(session: Session, *, user_id: int, clock: Clock = utc_now) -> User:
    """End every sign-in of the account: other browsers' open sessions at their next click,
    and every remembered sign-in. Audited as ``sessions_ended``."""
    user = existing_user(session, user_id=user_id)
    now = clock()
    end_sign_ins(user, at=now)
    return save_with_event(
        session, user=user, action=Action.SESSIONS_ENDED, actor_id=user.id, at=now,
        detail={"via": "account page"},
    )  # fmt: skip
