"""Account changes after registration: approval decisions by an administrator, a user's own
password change, and password resets for someone who has forgotten theirs (by an
administrator on the Admin page, or by the server's operator with ``python -m brainloc
reset-password``). Every change is audited; refusals raise :class:`AccountError`.
"""

from __future__ import annotations

from sqlmodel import Session

from brainloc.accounts import (
    ONE_TIME_PASSWORD_LIFETIME,
    AccountError,
    Clock,
    end_sign_ins,
    existing_user,
    found_user,
    hash_password,
    one_account_at_a_time,
    one_time_password,
    password_problems,
    refuse_counted,
    refuse_while_locked,
    save_with_event,
    user_named,
    verify_password,
)
from db import users as user_store
from db.audit import Action
from db.models import (
    ROLE_ADMIN,
    STATUS_APPROVED,
    STATUS_DISABLED,
    STATUS_PENDING,
    STATUS_REJECTED,
    User,
)
from db.types import utc_now

#: decision -> (statuses it may be applied to, resulting status)
DECISIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": ((STATUS_PENDING, STATUS_REJECTED), STATUS_APPROVED),
    "reject": ((STATUS_PENDING,), STATUS_REJECTED),
    "disable": ((STATUS_APPROVED, STATUS_PENDING), STATUS_DISABLED),
    "re-enable": ((STATUS_DISABLED,), STATUS_APPROVED),
}


def allowed_decisions(status: str) -> list[str]:
    """The decisions an administrator can take on an account with ``status``."""
    return [name for name, (sources, _) in DECISIONS.items() if status in sources]


def require_admin(session: Session, admin_id: int) -> User:
    admin = user_store.get_user(session, user_id=admin_id)
    if admin is None or admin.role != ROLE_ADMIN or admin.status != STATUS_APPROVED:
        raise AccountError({"admin": "Only an approved administrator can change accounts."})
    return admin


def other_account(session: Session, admin: User, user_id: int, *, own: str) -> User:
    """The account an administrator acts on; refused (``own`` says why) when it is their own."""
    user = existing_user(session, user_id=user_id)
    if user.id == admin.id:
        raise AccountError({"user": own})
    return user


def decide(
    session: Session, *, admin_id: int, user_id: int, decision: str, clock: Clock = utc_now
) -> User:
    """Apply ``decision`` (approve, reject, disable, re-enable) to an account, audited.

    Disabling also revokes the account's remembered sign-ins. Administrators cannot change
    their own account, so the last administrator cannot lock everyone out by mistake. A
    decision applies only to the status it was checked against: when another administrator
    changed the account meanwhile, it is refused and nothing is saved.
    """
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; expected one of {sorted(DECISIONS)}")
    admin = require_admin(session, admin_id)
    user = other_account(
        session, admin, user_id, own="You cannot change the status of your own account."
    )
    sources, target = DECISIONS[decision]
    if user.status not in sources:
        raise AccountError({"user": f"Cannot {decision} an account that is {user.status}."})
    now = clock()
    previous = user.status
    if not user_store.claim_status(session, user_id=user.id, expected=previous, status=target):
        # Another administrator decided since the status was read: this decision was taken
        # on what the account no longer is.
        current = user_store.get_user_locked(session, user_id=user.id)
        now_status = current.status if current else "removed"
        raise AccountError(
            {"user": f"The account was changed meanwhile: it is {now_status} now. Look again."}
        )
    user.status = target
    user.status_changed_at = now
    user.status_changed_by_id = admin.id
    user.updated_at = now
    if target == STATUS_DISABLED:
        end_sign_ins(user, at=now)
    if decision == "re-enable":
        user.locked_until = None
    return save_with_event(
        session, user=user, action=Action.STATUS_CHANGE, actor_id=admin.id, at=now,
        detail={"from": previous, "to": target, "decision": decision},
    )  # fmt: skip


def change_password(
    session: Session,
    *,
    user_id: int,
    current_password: str,
    new_password: str,
    new_password_repeat: str,
    clock: Clock = utc_now,
) -> User:
    """Change a user's own password after checking the current one, audited.

    This also lifts ``must_change_password`` and the one-time password's limits: the
    password is now one the user chose. A one-time password that has signed in is still
    accepted here as the current one: this is how its session replaces it.
    Remembered sign-ins on other browsers stop working (their cookies predate the change).
    A wrong current password counts as a failed sign-in towards the lockout (and, while the
    account is locked, is refused as such), so a session left open is no place to guess the
    password; the right one changes it even while the account is locked. Checks of
    one account take turns (:func:`brainloc.accounts.one_account_at_a_time`); committed
    before it returns.
    """
    with one_account_at_a_time(session, user_id) as found:
        user = found_user(found)
        now = clock()
        if not verify_password(current_password, user.password_hash):
            # A lock shows only here: the right password still changes it, so whoever locks
            # the account from the sign-in page cannot stop its owner from changing it.
            refuse_while_locked(user, at=now, field="current_password")
            refuse_counted(
                session, user=user, at=now, field="current_password",
                message="The current password is wrong.", reason="wrong password",
            )  # fmt: skip
        problems = password_problems(
            new_password, new_password_repeat, username=user.username, email=user.email
        )
        if new_password == current_password:
            problems.append("The new password must differ from the current one.")
        if problems:
            raise AccountError({"new_password": " ".join(problems)})
        user.password_hash = hash_password(new_password)
        user.must_change_password = False
        user.one_time_password_expires_at = None
        user.one_time_password_used_at = None
        user.updated_at = now
        end_sign_ins(user, at=now)
        save_with_event(session, user=user, action=Action.PASSWORD_CHANGE, actor_id=user.id, at=now)
    return user


def _issue_one_time_password(
    session: Session, *, user: User, actor_id: int | None, via: str, clock: Clock
) -> tuple[User, str]:
    """Give ``user`` a new generated password they must replace at their next sign-in.

    It signs in once, within :data:`brainloc.accounts.ONE_TIME_PASSWORD_LIFETIME` (24 hours);
    then the user sets their own in that session, or asks for a new reset. Their sessions and
    remembered sign-ins end, and a lockout ends too: failed attempts before the reset no
    longer count towards the next one (``check_login`` counts failures after
    ``locked_until``). The password itself is returned once and stored only as its hash.
    """
    now = clock()
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.one_time_password_expires_at = now + ONE_TIME_PASSWORD_LIFETIME
    user.one_time_password_used_at = None
    end_sign_ins(user, at=now)
    user.locked_until = now
    user.updated_at = now
    save_with_event(
        session, user=user, action=Action.PASSWORD_RESET, actor_id=actor_id, at=now,
        detail={"via": via},
    )  # fmt: skip
    return user, password


def reset_password(
    session: Session, *, admin_id: int, user_id: int, clock: Clock = utc_now
) -> tuple[User, str]:
    """An administrator resets another account's password; returns it with the one-time
    password to pass on (in person or by calling back a known number, never by e-mail).

    Administrators change their own password on the Account page, so they cannot reset it here.
    """
    admin = require_admin(session, admin_id)
    user = other_account(
        session, admin, user_id, own="Change your own password on the Account page."
    )
    return _issue_one_time_password(
        session, user=user, actor_id=admin.id, via="admin page", clock=clock
    )


def reset_password_from_console(
    session: Session, *, username: str, clock: Clock = utc_now
) -> tuple[User, str]:
    """The server's operator resets any account's password, including the last
    administrator's (``python -m brainloc reset-password``); audited with no acting user."""
    user = user_named(session, username=username)
    return _issue_one_time_password(
        session, user=user, actor_id=None, via="command line", clock=clock
    )
