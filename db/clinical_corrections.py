"""Data access for correcting the record of an analysis: its case reference, corrected.

Clinical records are amended, not rewritten: a corrected case reference becomes the
analysis's ``case_reference`` (what History searches, sorts and shows) and a new
``case_reference_versions`` row; the earlier references stay there with who set them and when
(version 1 is the reference given at upload). A correction names the version it was based on,
as a note save does: if another tab corrected the reference in between, it is refused with
:class:`StaleReferenceError`, which carries the newer reference, and the unique
``(analysis_id, version)`` constraint backs this up when two corrections race. Every function
takes ``owner_id`` and puts it in the SQL ``WHERE`` clause; nothing is committed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db import audit
from db.clinical import TARGET_ANALYSIS, clean_case_reference, owns_analysis
from db.clinical_notes import NotFoundError
from db.models import Analysis, CaseReferenceVersion

__all__ = [
    "NotFoundError",
    "ReferenceSnapshot",
    "StaleReferenceError",
    "correct_case_reference",
    "reference_history",
]


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
        ValueError: an empty or too long reference, or an analysis whose record is closed;
            nothing saved.
    """
    reference = clean_case_reference(reference)
    if not owns_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
        raise NotFoundError(f"analysis {analysis_id} not found")
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
