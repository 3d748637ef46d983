"""The audit log as administrators search and export it (the Admin page renders it).

An administrator answers questions like "who opened analysis 12", "what did this account do
last week" or "every failed sign-in in March" with an :class:`AuditFilter`, which the
database applies in SQL (:func:`db.audit.list_events`, :func:`db.audit.count_matching`).

Administrators manage accounts and do not browse clinical data, so detail keys that can hold
patient information (a case reference, which may be an accession number) are left out of what
they see and export (:data:`CLINICAL_DETAIL_KEYS`); records are named by their id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd

from brainloc.csv_export import csv_bytes
from brainloc.history import day_range
from db.clinical import TARGET_ANALYSIS
from db.models import AuditEvent

#: Detail keys never shown to administrators (older upload events recorded the reference).
CLINICAL_DETAIL_KEYS = frozenset({"case_reference"})
COLUMNS = ["Time (UTC)", "User", "Action", "Record", "Detail"]
NOBODY = "—"


@dataclass(frozen=True)
class AuditFilter:
    """Which events to list: those involving one account (its own actions and changes made to
    it), some actions, calendar days (UTC, inclusive), one analysis. Empty fields match
    everything."""

    user_id: int | None = None
    actions: tuple[str, ...] = ()
    first_day: date | None = None
    last_day: date | None = None
    analysis_id: int | None = None

    def query(self) -> dict[str, Any]:
        """Keyword arguments for :func:`db.audit.list_events` and ``count_matching``.

        Raises:
            ValueError: the first day is after the last one.
        """
        since, until = day_range(self.first_day, self.last_day)
        target = (TARGET_ANALYSIS, self.analysis_id) if self.analysis_id is not None else None
        return {
            "involving": self.user_id,
            "actions": list(self.actions) or None,
            "since": since,
            "until": until,
            "target": target,
        }


def detail_text(detail: Mapping[str, Any]) -> str:
    """An event's detail as ``key=value, ...`` (sorted), clinical keys left out."""
    return ", ".join(
        f"{key}={value}" for key, value in sorted(detail.items()) if key not in CLINICAL_DETAIL_KEYS
    )


def audit_frame(events: Sequence[AuditEvent], usernames: Mapping[int, str]) -> pd.DataFrame:
    """One row per event, newest first as given: time, acting account, action, record, detail."""
    rows = [
        {
            "Time (UTC)": event.created_at,
            "User": usernames.get(event.actor_id, NOBODY) if event.actor_id else NOBODY,
            "Action": event.action,
            "Record": f"{event.target_type} {event.target_id}" if event.target_type else "",
            "Detail": detail_text(event.detail),
        }
        for event in events
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def audit_csv(frame: pd.DataFrame) -> bytes:
    """The table as CSV: ISO 8601 UTC times, spreadsheet formulas neutralised (a failed
    sign-in records whatever username was typed)."""
    out = frame.copy()
    if not out.empty:
        out["Time (UTC)"] = pd.to_datetime(out["Time (UTC)"], utc=True).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    return csv_bytes(out)


def export_name(now: datetime) -> str:
    """The download's file name, e.g. ``brainloc-audit-20261127-0915.csv``."""
    return f"brainloc-audit-{now:%Y%m%d-%H%M}.csv"
