"""Data access for accounts: practitioner categories and users.

Keyword-only functions that take a session; they never commit (the caller's
``session_scope`` does), they only flush when an id is needed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session, func, select

from db.models import PractitionerCategory, User


def sessions_ended(ended_at: datetime | None, signed_in_at: datetime) -> bool:
    """Whether the account's sign-ins, ended at ``ended_at`` (``User.sessions_ended_at``;
    None: never), end a browser session that signed in (or checked its password) at
    ``signed_in_at``: they do when they were ended then or later. The one rule behind the
    pages' check (:meth:`brainloc.auth.CurrentUser.signed_in_still`), the saves' check
    (:mod:`db.clinical`) and the second sign-in step's (:mod:`brainloc.two_step`)."""
    return ended_at is not None and ended_at >= signed_in_at


def list_categories(session: Session) -> list[PractitionerCategory]:
    """All practitioner categories in display order."""
    statement = select(PractitionerCategory).order_by(
        PractitionerCategory.sort_order, PractitionerCategory.id
    )
    return list(session.exec(statement))


def get_category(session: Session, *, category_id: int) -> PractitionerCategory | None:
    """The category with this id, or None."""
    return session.get(PractitionerCategory, category_id)


def get_category_by_code(session: Session, *, code: str) -> PractitionerCategory | None:
    """The category with this code (e.g. ``"radiologist"``), or None."""
    statement = select(PractitionerCategory).where(PractitionerCategory.code == code)
    return session.exec(statement).first()


def get_user(session: Session, *, user_id: int) -> User | None:
    """The user with this id, or None."""
    return session.get(User, user_id)


def get_user_locked(session: Session, *, user_id: int) -> User | None:
    """The user with this id, read afresh and, on PostgreSQL, locked until the transaction
    ends (``SELECT … FOR UPDATE``), so two requests deciding on the same account (two-step
    codes, the lockout) take turns. SQLite has no row locks; there the caller also holds
    :func:`brainloc.two_step`'s per-account lock, as one server process serves SQLite."""
    statement = (
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()


def claim_totp_step(session: Session, *, user_id: int, step: int) -> bool:
    """Record ``step`` as the account's last used two-step time step, unless that step or a
    later one was used already; True if this call claimed it. One conditional ``UPDATE``, so
    of two requests carrying the same code only one can succeed, on any database."""
    statement = (
        update(User)
        .where(User.id == user_id)
        .where(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return session.exec(statement).rowcount == 1


def claim_status(session: Session, *, user_id: int, expected: str, status: str) -> bool:
    """Set the account's status to ``status`` if it is still ``expected``; True if it was.
    One conditional ``UPDATE``, so of two decisions taken on the same status (two
    administrators at once) only the first applies, on any database."""
    statement = (
        update(User).where(User.id == user_id, User.status == expected).values(status=status)
    )
    return session.exec(statement).rowcount == 1


def touch_last_active(session: Session, *, user_id: int, at: datetime) -> None:
    """Record activity of the account at ``at`` (``users.last_active_at``), unless a later
    one is recorded already (another browser session of the account wrote meanwhile). One
    conditional ``UPDATE``, so the time never goes back."""
    statement = (
        update(User)
        .where(User.id == user_id)
        .where(or_(User.last_active_at.is_(None), User.last_active_at < at))
        .values(last_active_at=at)
    )
    session.exec(statement)


def get_user_by_username(session: Session, *, username: str) -> User | None:
    """The user with this (already normalised, lower-case) username, or None."""
    return session.exec(select(User).where(User.username == username)).first()


def get_user_by_email(session: Session, *, email: str) -> User | None:
    """The user with this (already normalised, lower-case) email, or None."""
    return session.exec(select(User).where(User.email == email)).first()


def list_users(session: Session, *, status: str | None = None) -> list[User]:
    """All users (optionally only those with ``status``), newest first."""
    statement = select(User).order_by(User.created_at.desc(), User.id.desc())
    if status is not None:
        statement = statement.where(User.status == status)
    return list(session.exec(statement))


def count_users(session: Session, *, role: str | None = None) -> int:
    """How many users there are (optionally only with ``role``)."""
    statement = select(func.count()).select_from(User)
    if role is not None:
        statement = statement.where(User.role == role)
    return int(session.exec(statement).one())


def save_user(session: Session, *, user: User) -> User:
    """Add or update ``user`` and flush, so a new user gets its id."""
    session.add(user)
    session.flush()
    return user
