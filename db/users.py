"""Data access for accounts: practitioner categories and users.

Keyword-only functions that take a session; they never commit (the caller's
``session_scope`` does), they only flush when an id is needed.
"""

from __future__ import annotations

from sqlmodel import Session, func, select

from db.models import PractitionerCategory, User


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
