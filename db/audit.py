"""The audit log: who did what to which record, and when.

Events are only ever added. Use the ``Action`` names below so the admin view and the
recent-activity page can filter on them; other modules may add their own names (keep them
short, snake_case).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, and_, col, func, or_, select

from db.models import AuditEvent
from db.types import utc_now

#: ``target_type`` of events about an account.
TARGET_USER = "user"


class Action:
    """Audit action names."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    #: A right password for an account with two-step sign-in; the code is asked next.
    SECOND_STEP_ASKED = "second_step_asked"
    LOGOUT = "logout"
    ACCOUNT_LOCKED = "account_locked"
    REGISTER = "register"
    #: A registration refused: a field invalid, its username or email has an account, or its
    #: address registered or was refused too often (``reason`` says which).
    REGISTER_REFUSED = "register_refused"
    STATUS_CHANGE = "status_change"
    PASSWORD_CHANGE = "password_change"
    PASSWORD_RESET = "password_reset"
    TWO_STEP_ENABLED = "two_step_enabled"
    TWO_STEP_DISABLED = "two_step_disabled"
    RECOVERY_CODES_RENEWED = "recovery_codes_renewed"
    SESSIONS_ENDED = "sessions_ended"
    ADMIN_CREATED = "admin_created"
    UPLOAD = "upload"
    VIEW = "view"
    NOTE_EDIT = "note_edit"
    REPORT_ISSUE = "report_issue"
    REPORT_DOWNLOAD = "report_download"
    DOWNLOAD = "download"
    EXPORT = "export"
    #: A case reference corrected by its owner (detail: the new version, never the text).
    REFERENCE_CORRECTED = "reference_corrected"
    #: An analysis marked entered in error by its owner (the reason stays out of the log).
    ENTERED_IN_ERROR = "entered_in_error"


def record_event(
    session: Session,
    *,
    action: str,
    actor_id: int | None,
    target_type: str | None = None,
    target_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
    client_address: str | None = None,
) -> AuditEvent:
    """Add one audit event (flushed, so it is part of the caller's transaction).

    ``client_address`` is for an event that counts towards its address's throttle
    (:func:`nth_newest_from_address`): a failed sign-in, a registration or a refused one. It
    goes into its own indexed column and, as ``address``, into ``detail``, where the audit
    view shows it.
    """
    if not action:
        raise ValueError("an audit event needs an action name")
    detail = dict(detail or {})
    if client_address is not None:
        detail["address"] = client_address
    event = AuditEvent(
        action=action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
        created_at=at or utc_now(),
        client_address=client_address,
    )
    session.add(event)
    session.flush()
    return event


def count_events(session: Session, *, actor_id: int, action: str, after: datetime) -> int:
    """How many ``action`` events ``actor_id`` has strictly after ``after``."""
    statement = (
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.actor_id == actor_id)
        .where(AuditEvent.action == action)
        .where(AuditEvent.created_at > after)
    )
    return int(session.exec(statement).one())


def nth_newest_from_address(
    session: Session, *, client_address: str, action: str, after: datetime, n: int
) -> datetime | None:
    """The time of the ``n``-th newest ``action`` event recorded with ``client_address``
    strictly after ``after``; None when there are fewer than ``n``. One range read of the
    ``(client_address, action, created_at)`` index, however many events there are."""
    if n < 1:
        raise ValueError("n must be at least 1")
    statement = (
        select(AuditEvent.created_at)
        .where(AuditEvent.client_address == client_address)
        .where(AuditEvent.action == action)
        .where(AuditEvent.created_at > after)
        .order_by(col(AuditEvent.created_at).desc())
        .offset(n - 1)
        .limit(1)
    )
    return session.exec(statement).first()


def _matching(
    statement,
    *,
    actor_id: int | None = None,
    actions: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target: tuple[str, int] | None = None,
    involving: int | None = None,
):
    if involving is not None:
        statement = statement.where(
            or_(
                AuditEvent.actor_id == involving,
                and_(AuditEvent.target_type == TARGET_USER, AuditEvent.target_id == involving),
            )
        )
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if actions:
        statement = statement.where(col(AuditEvent.action).in_(list(actions)))
    if since is not None:
        statement = statement.where(AuditEvent.created_at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.created_at < until)
    if target is not None:
        statement = statement.where(AuditEvent.target_type == target[0])
        statement = statement.where(AuditEvent.target_id == target[1])
    return statement


def list_events(
    session: Session,
    *,
    actor_id: int | None = None,
    actions: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target: tuple[str, int] | None = None,
    involving: int | None = None,
    limit: int = 200,
) -> list[AuditEvent]:
    """Events newest first, optionally only one actor's, only some actions, only those from
    ``since`` (inclusive) to ``until`` (exclusive), only those on one record
    (``target=("analysis", 12)``), only those an account did or that were done to it
    (``involving``: its own actions and changes to its account, for administrators).

    For a practitioner's own activity pass ``actor_id=user.id`` (always, in that case).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    statement = select(AuditEvent).order_by(
        col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc()
    )
    statement = _matching(
        statement, actor_id=actor_id, actions=actions, since=since, until=until, target=target,
        involving=involving,
    )  # fmt: skip
    return list(session.exec(statement.limit(limit)))


def count_matching(session: Session, **filters: Any) -> int:
    """How many events :func:`list_events` would return with the same keyword filters
    (``actor_id``, ``actions``, ``since``, ``until``, ``target``, ``involving``) and no limit."""
    statement = select(func.count()).select_from(AuditEvent)
    return int(session.exec(_matching(statement, **filters)).one())


def list_actions(session: Session) -> list[str]:
    """Every action name the log holds, sorted (for a filter's choices)."""
    return sorted(session.exec(select(AuditEvent.action).distinct()))
