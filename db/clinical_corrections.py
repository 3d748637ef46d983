"""Data access for correcting the record of an analysis: its case reference corrected, or the
whole analysis marked "entered in error".

Clinical records are amended, not rewritten: a corrected case reference becomes the
analysis's ``case_reference`` (what History searches, sorts and shows) and a new
``case_reference_versions`` row; the earlier references stay there with who set them and when
(version 1 is the reference given at upload). A correction names the version it was based on,
as a note save does: if another tab corrected the reference in between, it is refused with
:class:`StaleReferenceError`, which carries the newer reference, and the unique
``(analysis_id, version)`` constraint backs this up when two corrections race. Every function
takes ``owner_id`` and puts it in the SQL ``WHERE`` clause; nothing is committed here.

An analysis of the wrong scan or the wrong patient is marked entered in error
(:func:`mark_entered_in_error`) with a reason, and nothing is deleted: it stays readable by
its owner by id, but is left out of History by default and of follow-up comparison, its notes
and case reference can no longer be changed, and a report issued from it says so. The mark is
final, as FHIR's ``entered-in-error`` status is: a record that was a mistake does not come
back into use; the right scan is analysed again as a new analysis. The confirmation step on
the Case page and the required reason guard against a mark made by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db import audit
from db.clinical import (
    RECORD_CLOSED,
    TARGET_ANALYSIS,
    clean_case_reference,
    is_entered_in_error,
    lock_own_analysis,
    owns_analysis,
)
from db.clinical_notes import NotFoundError
from db.models import Analysis, CaseReferenceVersion
from db.types import utc_now

__all__ = [
    "NotFoundError",
    "ReferenceSnapshot",
    "StaleReferenceError",
    "correct_case_reference",
    "mark_entered_in_error",
    "reference_history",
]

#: Longest reason for marking an analysis entered in error, in characters.
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class ReferenceSnapshot:
    """One case reference an analysis has had, as plain values."""

    version: int
    reference: str
    author_id: int
    created_at: datetime


def _snapshot(row: CaseReferenceVersion) -> ReferenceSnapshot:
    return ReferenceSnapshot(row.version, row.reference, row.author_id, row.created_at)


class StaleReferenceError(RuntimeError):
    """A correction was based on an older reference than the current one.

    Attributes:
        current: the newest reference, which the refused correction would have replaced unseen.
    """

    def __init__(self, current: ReferenceSnapshot) -> None:
        super().__init__(
            f"the case reference was corrected (version {current.version}) after you started "
            "editing it; your correction was not saved"
        )
        self.current = current


def _own_versions(analysis_id: int, owner_id: int):
    """Reference versions of one analysis, newest first, joined to it so the owner filter is
    SQL."""
    return (
        select(CaseReferenceVersion)
        .join(Analysis, col(Analysis.id) == col(CaseReferenceVersion.analysis_id))
        .where(CaseReferenceVersion.analysis_id == analysis_id, Analysis.owner_id == owner_id)
        .order_by(col(CaseReferenceVersion.version).desc())
    )


def reference_history(
    session: Session, *, analysis_id: int, owner_id: int
) -> list[ReferenceSnapshot]:
    """Every case reference of an own analysis, newest (the current one) first; empty for
    anyone else's."""
    return [_snapshot(row) for row in session.exec(_own_versions(analysis_id, owner_id))]


def correct_case_reference(
    session: Session,
    *,
    analysis_id: int,
    owner_id: int,
    reference: str,
    base_version: int,
) -> ReferenceSnapshot:
    """Correct the case reference of an own analysis, keep the earlier one, and audit it.

    Args:
        reference: the corrected reference (validated as at upload: stripped, not empty,
            at most 200 characters).
        base_version: the reference version the editor started from.

    Returns:
        The new version, or the current one unchanged when ``reference`` equals it.

    Raises:
        NotFoundError: not the owner's analysis.
        StaleReferenceError: the reference was corrected since ``base_version``; nothing saved.
        ValueError: an empty or too long reference, or an analysis marked entered in error;
            nothing saved.
    """
    reference = clean_case_reference(reference)
    # First: a mark entered in error committed meanwhile is seen below, or waits for this.
    if not lock_own_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
        raise NotFoundError(f"analysis {analysis_id} not found")
    if is_entered_in_error(session, analysis_id=analysis_id, owner_id=owner_id):
        raise ValueError(RECORD_CLOSED)
    current = session.exec(_own_versions(analysis_id, owner_id).limit(1)).first()
    if current is None:  # every analysis has its version 1 (upload, or migration 0009)
        raise NotFoundError(f"analysis {analysis_id} has no case reference on record")
    if current.version != base_version:
        raise StaleReferenceError(_snapshot(current))
    if current.reference == reference:
        return _snapshot(current)
    corrected = CaseReferenceVersion(
        analysis_id=analysis_id, version=current.version + 1, reference=reference,
        author_id=owner_id,
    )  # fmt: skip
    try:
        # A savepoint, so that losing a race leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(corrected)
            session.flush()
    except IntegrityError:
        newest = session.exec(_own_versions(analysis_id, owner_id).limit(1)).first()
        raise StaleReferenceError(_snapshot(newest)) from None
    session.exec(
        update(Analysis)
        .where(col(Analysis.id) == analysis_id, col(Analysis.owner_id) == owner_id)
        .values(case_reference=reference)
    )
    audit.record_event(
        session,
        action=audit.Action.REFERENCE_CORRECTED,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis_id,
        # The references themselves (maybe accession numbers) stay out of the audit log,
        # which administrators read; the versions are in case_reference_versions.
        detail={"version": corrected.version},
    )
    return _snapshot(corrected)


def mark_entered_in_error(
    session: Session, *, analysis_id: int, owner_id: int, reason: str
) -> datetime:
    """Mark an own analysis entered in error, for good, and audit it.

    One conditional ``UPDATE`` (owner, and not marked yet), so of two tabs marking at once
    only the first counts and the second is told.

    Args:
        reason: why (the wrong scan, the wrong patient...): required, stripped, at most
            :data:`MAX_REASON_CHARS` characters.

    Returns:
        When it was marked.

    Raises:
        NotFoundError: not the owner's analysis.
        ValueError: no reason, a reason too long, or an analysis marked already; nothing saved.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("a reason is required")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    marked_at = utc_now()
    statement = (
        update(Analysis)
        .where(col(Analysis.id) == analysis_id, col(Analysis.owner_id) == owner_id)
        .where(col(Analysis.entered_in_error_at).is_(None))
        .values(entered_in_error_at=marked_at, entered_in_error_reason=reason)
    )
    if session.exec(statement).rowcount != 1:
        if not owns_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
            raise NotFoundError(f"analysis {analysis_id} not found")
        raise ValueError("this analysis was marked entered in error already")
    audit.record_event(
        session,
        action=audit.Action.ENTERED_IN_ERROR,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis_id,
        # The reason is free text that may name the patient: it stays with the analysis,
        # out of the audit log that administrators read.
        detail={},
    )
    return marked_at
