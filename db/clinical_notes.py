"""Data access for the notes on an analysis and the reports issued from it.

The note of an analysis marked entered in error can be read but not changed
(:data:`db.clinical.RECORD_CLOSED`); reports can still be issued from it, and say so.

Notes are versioned: every save adds a ``note_versions`` row and nothing is overwritten. A
save names the version it was based on; if someone (another tab) saved in between, the save
is refused with :class:`StaleNoteError`, which carries the newer version so the page can show
both texts. The unique ``(analysis_id, version)`` constraint backs this up when two saves
race. Issued reports keep their exact PDF bytes. Every function checks ownership in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db import audit
from db.arrays import sha256_hex
from db.clinical import (
    RECORD_CLOSED,
    TARGET_ANALYSIS,
    is_entered_in_error,
    lock_own_analysis,
    owns_analysis,
)
from db.models import Analysis, IssuedReport, NoteVersion
from db.types import utc_now

#: Longest note accepted, in characters.
MAX_NOTE_CHARS = 20_000


class NotFoundError(LookupError):
    """The analysis (or report) does not exist for this user."""


@dataclass(frozen=True)
class NoteSnapshot:
    """A note version as plain values (still readable after the session rolled back)."""

    version: int
    body: str
    author_id: int
    created_at: datetime


class StaleNoteError(RuntimeError):
    """A note save was based on an older version than the current one.

    Attributes:
        current: the newest saved version, which the refused save would have hidden.
    """

    def __init__(self, current: NoteVersion) -> None:
        super().__init__(
            f"the note was changed (version {current.version}) after you started editing; "
            "your text was not saved"
        )
        self.current = NoteSnapshot(
            current.version, current.body, current.author_id, current.created_at
        )


def _require_owner(session: Session, *, analysis_id: int, owner_id: int) -> None:
    if not owns_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
        raise NotFoundError(f"analysis {analysis_id} not found")


def _own_versions(analysis_id: int, owner_id: int):
    """Note versions of one analysis, newest first, joined to it so the owner filter is SQL."""
    return (
        select(NoteVersion)
        .join(Analysis, col(Analysis.id) == col(NoteVersion.analysis_id))
        .where(NoteVersion.analysis_id == analysis_id, Analysis.owner_id == owner_id)
        .order_by(col(NoteVersion.version).desc())
    )


def latest_note(session: Session, *, analysis_id: int, owner_id: int) -> NoteVersion | None:
    """The newest note version of an own analysis, or None (no note, or not the owner's)."""
    return session.exec(_own_versions(analysis_id, owner_id).limit(1)).first()


def note_history(session: Session, *, analysis_id: int, owner_id: int) -> list[NoteVersion]:
    """Every version of the note on an own analysis, newest first; empty for anyone else."""
    return list(session.exec(_own_versions(analysis_id, owner_id)))


def latest_notes(
    session: Session, *, owner_id: int, analysis_ids: list[int]
) -> dict[int, NoteVersion]:
    """The newest note version of each given own analysis (absent when there is none)."""
    if not analysis_ids:
        return {}
    statement = (
        select(NoteVersion)
        .join(Analysis, col(Analysis.id) == col(NoteVersion.analysis_id))
        .where(col(NoteVersion.analysis_id).in_(analysis_ids), Analysis.owner_id == owner_id)
        .order_by(col(NoteVersion.analysis_id), col(NoteVersion.version))
    )
    # Ordered by version, so the last one seen per analysis is the newest.
    return {note.analysis_id: note for note in session.exec(statement)}


def add_note_version(
    session: Session,
    *,
    analysis_id: int,
    owner_id: int,
    body: str,
    base_version: int | None,
) -> NoteVersion:
    """Save a new version of the note on an own analysis, and audit it.

    Args:
        body: the full note text.
        base_version: the version the editor started from (None when there was no note).

    Returns:
        The new version, or the current one unchanged when ``body`` equals it.

    Raises:
        NotFoundError: not the owner's analysis.
        StaleNoteError: the note changed since ``base_version``; nothing was saved.
        ValueError: the note is too long, or the analysis was marked entered in error (its
            notes are kept as they were when it was found to be a mistake).
    """
    if len(body) > MAX_NOTE_CHARS:
        raise ValueError(f"the note is longer than {MAX_NOTE_CHARS} characters")
    # First: a mark entered in error committed meanwhile is seen below, or waits for this.
    if not lock_own_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
        raise NotFoundError(f"analysis {analysis_id} not found")
    if is_entered_in_error(session, analysis_id=analysis_id, owner_id=owner_id):
        raise ValueError(RECORD_CLOSED)
    current = latest_note(session, analysis_id=analysis_id, owner_id=owner_id)
    current_version = current.version if current else None
    if current_version != base_version:
        raise StaleNoteError(current)
    if current is not None and current.body == body:
        return current
    note = NoteVersion(
        analysis_id=analysis_id,
        version=(current_version or 0) + 1,
        parent_id=current.id if current else None,
        author_id=owner_id,
        body=body,
    )
    try:
        # A savepoint, so that losing a race leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(note)
            session.flush()
    except IntegrityError:
        newest = latest_note(session, analysis_id=analysis_id, owner_id=owner_id)
        raise StaleNoteError(newest) from None
    audit.record_event(
        session,
        action=audit.Action.NOTE_EDIT,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis_id,
        detail={"version": note.version, "chars": len(body)},
    )
    return note


def issue_report(
    session: Session,
    *,
    analysis_id: int,
    owner_id: int,
    pdf: bytes,
    filename: str,
    note_version_id: int | None,
    issued_at: datetime | None = None,
) -> IssuedReport:
    """Store an issued PDF report of an own analysis (exact bytes) and audit it.

    Raises:
        NotFoundError: not the owner's analysis.
        ValueError: empty PDF, or a note version of another analysis.
    """
    if not pdf.startswith(b"%PDF"):
        raise ValueError("the report is not a PDF document")
    _require_owner(session, analysis_id=analysis_id, owner_id=owner_id)
    if note_version_id is not None:
        note = session.get(NoteVersion, note_version_id)
        if note is None or note.analysis_id != analysis_id:
            raise ValueError("the note version does not belong to this analysis")
    report = IssuedReport(
        analysis_id=analysis_id,
        author_id=owner_id,
        note_version_id=note_version_id,
        filename=filename[:200],
        pdf=pdf,
        sha256=sha256_hex(pdf),
        created_at=issued_at or utc_now(),
    )
    session.add(report)
    session.flush()
    audit.record_event(
        session,
        action=audit.Action.REPORT_ISSUE,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis_id,
        detail={"report_id": report.id, "sha256": report.sha256},
    )
    return report


def list_reports(session: Session, *, analysis_id: int, owner_id: int) -> list[IssuedReport]:
    """Reports issued from an own analysis, newest first; empty for anyone else's."""
    statement = (
        select(IssuedReport)
        .join(Analysis, col(Analysis.id) == col(IssuedReport.analysis_id))
        .where(IssuedReport.analysis_id == analysis_id, Analysis.owner_id == owner_id)
        .order_by(col(IssuedReport.created_at).desc(), col(IssuedReport.id).desc())
    )
    return list(session.exec(statement))


def get_report(session: Session, *, report_id: int, owner_id: int) -> IssuedReport | None:
    """An issued report of an own analysis, or None."""
    statement = (
        select(IssuedReport)
        .join(Analysis, col(Analysis.id) == col(IssuedReport.analysis_id))
        .where(IssuedReport.id == report_id, Analysis.owner_id == owner_id)
    )
    return session.exec(statement).first()
