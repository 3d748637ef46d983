"""Recent activity: a practitioner's own clinical actions from the audit log, newest first,
each with the case it concerns. Only the owner's events and the owner's analyses are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from db import audit
from db.clinical import TARGET_ANALYSIS
from db.models import Analysis

#: The actions the recent-activity page shows.
ACTIVITY_ACTIONS = (
    audit.Action.UPLOAD,
    audit.Action.VIEW,
    audit.Action.NOTE_EDIT,
    audit.Action.REPORT_ISSUE,
    audit.Action.REPORT_DOWNLOAD,
    audit.Action.DOWNLOAD,
    audit.Action.EXPORT,
    audit.Action.REFERENCE_CORRECTED,
    audit.Action.ENTERED_IN_ERROR,
)


@dataclass(frozen=True)
class ActivityItem:
    """One recent action of a practitioner, with the case it concerns (if any)."""

    at: datetime
    action: str
    analysis_id: int | None
    case_reference: str | None
    detail: dict[str, Any]


def recent_activity(session: Session, *, owner_id: int, limit: int = 50) -> list[ActivityItem]:
    """The owner's latest clinical actions, newest first, each with its case reference."""
    events = audit.list_events(session, actor_id=owner_id, actions=ACTIVITY_ACTIONS, limit=limit)
    ids = {e.target_id for e in events if e.target_type == TARGET_ANALYSIS and e.target_id}
    references: dict[int, str] = {}
    if ids:
        statement = select(Analysis.id, Analysis.case_reference).where(
            col(Analysis.id).in_(ids), Analysis.owner_id == owner_id
        )
        references = {row[0]: row[1] for row in session.exec(statement)}
    items = []
    for event in events:
        analysis_id = event.target_id if event.target_id in references else None
        items.append(
            ActivityItem(
                at=event.created_at,
                action=event.action,
                analysis_id=analysis_id,
                case_reference=references.get(analysis_id) if analysis_id else None,
                detail=dict(event.detail or {}),
            )
        )
    return items
