"""Data access for analyses: create one (all-or-nothing), read it back for its owner, list and
filter a practitioner's own analyses, and record what they do to them.

Every read takes ``owner_id`` and puts it in the SQL ``WHERE`` clause, so another user's id
returns nothing (``None`` or an empty list) whatever the page asks for. Notes and issued
reports are in :mod:`db.clinical_notes`, corrections of the record (a case reference
corrected) in :mod:`db.clinical_corrections`, recent activity in :mod:`db.clinical_activity`.
Functions are keyword-only, take a session first and never commit: the caller's
:func:`db.engine.session_scope` does, so a failure anywhere rolls the whole action back
(never a partial save).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Boolean, exists, func, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col, select

from db import audit
from db import users as user_store
from db.arrays import array_to_bytes, sha256_hex
from db.engine import SQLITE_CASEFOLD
from db.models import (
    STATUS_APPROVED,
    Analysis,
    AnalysisSlice,
    AuditEvent,
    CaseReferenceVersion,
    NoteVersion,
)

#: Audit target type of every clinical event.
TARGET_ANALYSIS = "analysis"
#: Columns the history may be sorted by.
SORT_COLUMNS = {
    "created_at": Analysis.created_at,
    "tumor_probability": Analysis.tumor_probability,
    "case_reference": Analysis.case_reference,
}


@dataclass(frozen=True)
class SliceInput:
    """One analysed slice as it is stored.

    Attributes:
        image: the scan exactly as analysed, uint8 (H, W, 3) (any array round-trips).
        mask: bool (H, W) at the scan's size, empty when negative.
        tumor_probability: classifier output in [0, 1].
        has_tumor: the slice's decision.
        findings: JSON-able measurements of the mask.
        source_name: the slice's label, e.g. "case.tif [page 3]".
        spacing_mm: (row, column) pixel spacing when known.
        slice_thickness_mm: slice distance when known.
    """

    image: np.ndarray
    mask: np.ndarray
    tumor_probability: float
    has_tumor: bool
    findings: Mapping[str, Any] = field(default_factory=dict)
    source_name: str = ""
    spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None


#: Why a save from a browser session whose sign-ins were ended while its models ran stores
#: nothing (the Analyze page shows it after "Nothing was saved.").
SIGNED_OUT_MEANWHILE = (
    "this session was signed out while the analysis ran: the account's sign-ins were ended "
    "(its password or two-step sign-in was changed, or all its sessions were ended), so no "
    "analysis is stored. Sign in again and analyse the files once more."
)


#: Why an analysis marked entered in error takes no more changes (note, case reference).
RECORD_CLOSED = (
    "this analysis was marked entered in error, so its record is closed: its notes and case "
    "reference can be read but not changed"
)

#: Longest case reference accepted, in characters (the column's size).
MAX_REFERENCE_CHARS = 200


def clean_case_reference(case_reference: str) -> str:
    """A case reference as stored: stripped of surrounding blanks.

    Raises:
        ValueError: it is empty (or blank), or longer than :data:`MAX_REFERENCE_CHARS`.
    """
    case_reference = case_reference.strip()
    if not case_reference:
        raise ValueError("a case reference is required")
    if len(case_reference) > MAX_REFERENCE_CHARS:
        raise ValueError(f"the case reference is longer than {MAX_REFERENCE_CHARS} characters")
    return case_reference


def _check_slice(index: int, item: SliceInput) -> None:
    image, mask = np.asarray(item.image), np.asarray(item.mask)
    if image.ndim < 2:
        raise ValueError(f"slice {index}: the image must be at least 2-D, got {image.shape}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(
            f"slice {index}: the mask must be bool {image.shape[:2]}, got {mask.dtype} {mask.shape}"
        )
    if not 0.0 <= float(item.tumor_probability) <= 1.0:
        raise ValueError(f"slice {index}: tumor_probability must be in [0, 1]")


def _encoded(item: SliceInput) -> tuple[bytes, str, bytes]:
    """A slice's scan as stored, its SHA-256 and its mask as stored."""
    image_bytes = array_to_bytes(np.asarray(item.image))
    mask_bytes = array_to_bytes(np.asarray(item.mask, dtype=bool))
    return image_bytes, sha256_hex(image_bytes), mask_bytes


def create_analysis(
    session: Session,
    *,
    owner_id: int,
    case_reference: str,
    slices: Sequence[SliceInput],
    source_name: str = "",
    source_format: str = "",
    classifier: tuple[str, str] = ("", ""),
    segmenter: tuple[str, str] = ("", ""),
    decision_threshold: float = 0.5,
    findings: Mapping[str, Any] | None = None,
    arithmetic: str = "",
    signed_in_at: datetime | None = None,
) -> Analysis:
    """Store an analysis, its slices (scan and mask losslessly), version 1 of its case
    reference and an ``upload`` audit event.

    Everything is added to the caller's transaction; nothing is committed here, so an error
    in any slice leaves nothing behind. ``classifier``/``segmenter`` are (name, version);
    ``arithmetic`` is what the models ran in ("float32" or "bfloat16"). ``signed_in_at`` is
    when the browser session saving it signed in (None: not saved from one, as by the demo
    command); a session signed in before the account's sign-ins were ended
    (``users.sessions_ended_at``) saves nothing.
    The case probability is the highest slice probability; the case is positive when any
    slice is.

    Raises:
        ValueError: no slices, an empty case reference, a malformed slice, an owner whose
            account is not approved (any more), or a session that was signed out meanwhile.
    """
    case_reference = clean_case_reference(case_reference)
    if not slices:
        raise ValueError("an analysis needs at least one slice")
    for index, item in enumerate(slices):
        _check_slice(index, item)
    # Every scan and mask is encoded before the first row is written: the first write takes
    # SQLite's one write lock until the commit, and compressing a large case (512 slices of
    # 512 x 512 take about 9 s) while holding it made other users' sign-ins and saves wait
    # past the busy timeout and fail with "database is locked".
    encoded = [_encoded(item) for item in slices]
    analysis = Analysis(
        owner_id=owner_id,
        case_reference=case_reference,
        source_name=source_name[:500],
        source_format=source_format,
        slice_count=len(slices),
        classifier_name=classifier[0],
        classifier_version=classifier[1],
        segmenter_name=segmenter[0],
        segmenter_version=segmenter[1],
        decision_threshold=float(decision_threshold),
        arithmetic=arithmetic[:16],
        tumor_probability=max(float(item.tumor_probability) for item in slices),
        has_tumor=any(bool(item.has_tumor) for item in slices),
        findings=dict(findings or {}),
    )
    # On PostgreSQL the owner's row is locked before the first write: the analysis row's
    # foreign key takes a share lock on it, and two saves of one owner that asked for the
    # row FOR UPDATE only after their insert each waited for the other's share lock
    # ("deadlock detected", one save lost). On SQLite this is a plain read.
    user_store.get_user_locked(session, user_id=owner_id)
    session.add(analysis)
    session.flush()
    # The page checked the account when the analysis began; an administrator may have
    # disabled or rejected it while the models ran, or its sign-ins may have been ended from
    # another tab or browser (a password change, "End all other sessions"). Read now, after
    # the first write took SQLite's write lock (on PostgreSQL, with the account's row locked),
    # a change committed earlier is seen, and a later one waits until this save has committed.
    owner = user_store.get_user_locked(session, user_id=owner_id)
    if owner is None or owner.status != STATUS_APPROVED:
        raise ValueError("this account is not approved (any more), so no analysis is stored")
    # None: no browser session (the demo command), so no sign-in to have ended.
    if signed_in_at is not None and user_store.sessions_ended(
        owner.sessions_ended_at, signed_in_at
    ):
        raise ValueError(SIGNED_OUT_MEANWHILE)
    for index, (item, (image_bytes, image_sha256, mask_bytes)) in enumerate(
        zip(slices, encoded, strict=True)
    ):
        spacing = item.spacing_mm or (None, None)
        session.add(
            AnalysisSlice(
                analysis_id=analysis.id,
                slice_index=index,
                source_name=item.source_name[:500],
                image=image_bytes,
                image_sha256=image_sha256,
                height=int(item.image.shape[0]),
                width=int(item.image.shape[1]),
                mask=mask_bytes,
                tumor_probability=float(item.tumor_probability),
                has_tumor=bool(item.has_tumor),
                pixel_spacing_row_mm=spacing[0],
                pixel_spacing_col_mm=spacing[1],
                slice_thickness_mm=item.slice_thickness_mm,
                findings=dict(item.findings),
            )
        )
    # Version 1 of the case reference; a correction adds the next (db.clinical_corrections).
    session.add(
        CaseReferenceVersion(
            analysis_id=analysis.id,
            version=1,
            reference=case_reference,
            author_id=owner_id,
            created_at=analysis.created_at,
        )
    )
    session.flush()
    audit.record_event(
        session,
        action=audit.Action.UPLOAD,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis.id,
        # The record's id names it; the case reference (maybe an accession number) stays out
        # of the audit log, which administrators read.
        detail={"slices": len(slices)},
    )
    return analysis


def get_analysis(session: Session, *, analysis_id: int, owner_id: int) -> Analysis | None:
    """The analysis with this id if ``owner_id`` owns it; None otherwise (also for admins)."""
    statement = select(Analysis).where(Analysis.id == analysis_id, Analysis.owner_id == owner_id)
    return session.exec(statement).first()


def get_slices(session: Session, *, analysis_id: int, owner_id: int) -> list[AnalysisSlice]:
    """The slices of an own analysis in order; empty for anyone else's."""
    statement = (
        select(AnalysisSlice)
        .join(Analysis, col(Analysis.id) == col(AnalysisSlice.analysis_id))
        .where(AnalysisSlice.analysis_id == analysis_id, Analysis.owner_id == owner_id)
        .order_by(col(AnalysisSlice.slice_index))
    )
    return list(session.exec(statement))


def _latest_note_body():
    """A correlated scalar subquery: the body of an analysis's newest note version."""
    return (
        select(NoteVersion.body)
        .where(col(NoteVersion.analysis_id) == col(Analysis.id))
        .order_by(col(NoteVersion.version).desc())
        .limit(1)
        .scalar_subquery()
    )


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class _contains_folded(FunctionElement):  # noqa: N801 (an SQL function's name)
    """``_contains_folded(column, pattern)``: the column matches the ``LIKE`` pattern (escape
    character ``\\``) whatever the letters' case, in any script.

    Both sides are folded the same way before ``LIKE`` ("łódź" finds "ŁÓDŹ-17", "οδος" finds
    "ΟΔΟΣ", "weiß" finds "WEISS"). SQLite's own ``LIKE`` folds ASCII only, so there both go
    through :data:`db.engine.SQLITE_CASEFOLD` (Python's ``str.casefold``). Elsewhere
    (PostgreSQL) they go through ``lower()``, which is Unicode-aware in a UTF-8 database, plus
    the foldings ``casefold`` adds to it for letters real names use (:data:`_FOLD_AFTER_LOWER`):
    plain ``ILIKE`` lowers "Σ" to "σ" and so misses a final "ς", and keeps "ß" apart from "ss".
    """

    type = Boolean()
    inherit_cache = True
    name = "contains_folded"


#: What ``str.casefold`` folds beyond ``lower()``, for the letters real names and notes use:
#: final sigma, long s and the micro sign (one letter each, ``translate``), and sharp s ("ss").
_FOLD_AFTER_LOWER = ("ςſµ", "σsμ", "ß", "ss")


def _fold_like_casefold(value):
    one_from, one_to, two_from, two_to = _FOLD_AFTER_LOWER
    return func.replace(func.translate(func.lower(value), one_from, one_to), two_from, two_to)


@compiles(_contains_folded)
def _compile_contains_folded(element, compiler, **kw):
    column, pattern = element.clauses.clauses
    folded = _fold_like_casefold(column).like(_fold_like_casefold(pattern), escape="\\")
    return compiler.process(folded, **kw)


@compiles(_contains_folded, "sqlite")
def _compile_contains_folded_sqlite(element, compiler, **kw):
    column, pattern = element.clauses.clauses
    fold = getattr(func, SQLITE_CASEFOLD)
    return compiler.process(fold(column).like(fold(pattern), escape="\\"), **kw)


#: The most analyses a picker (Case page, follow-up baseline) lists, newest first.
PICKER_LIMIT = 5_000
#: The most analyses the History page shows and exports at once.
HISTORY_LIMIT = 20_000


def list_analyses(
    session: Session,
    *,
    owner_id: int,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    has_tumor: bool | None = None,
    min_probability: float | None = None,
    max_probability: float | None = None,
    text: str | None = None,
    entered_in_error: bool | None = False,
    sort_by: str = "created_at",
    descending: bool = True,
    limit: int = 1000,
) -> list[Analysis]:
    """The owner's analyses matching every given filter.

    ``created_to`` is exclusive. ``text`` matches, case-insensitively in any script (Polish,
    Greek, Cyrillic...), the case reference or the current (newest) version of the note; its
    ``%`` and ``_`` are literal. ``entered_in_error``: False (the default) leaves out the
    analyses marked entered in error, True lists only those, None both.

    Raises:
        ValueError: an unknown sort column, a limit below 1 or an inverted range.
    """
    if sort_by not in SORT_COLUMNS:
        raise ValueError(f"sort_by must be one of {sorted(SORT_COLUMNS)}, got {sort_by!r}")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    both = min_probability is not None and max_probability is not None
    if both and min_probability > max_probability:
        raise ValueError("the minimum probability is above the maximum")
    statement = select(Analysis).where(Analysis.owner_id == owner_id)
    if created_from is not None:
        statement = statement.where(Analysis.created_at >= created_from)
    if created_to is not None:
        statement = statement.where(Analysis.created_at < created_to)
    if has_tumor is not None:
        statement = statement.where(Analysis.has_tumor == has_tumor)
    if entered_in_error is True:
        statement = statement.where(col(Analysis.entered_in_error_at).is_not(None))
    elif entered_in_error is False:
        statement = statement.where(col(Analysis.entered_in_error_at).is_(None))
    if min_probability is not None:
        statement = statement.where(Analysis.tumor_probability >= min_probability)
    if max_probability is not None:
        statement = statement.where(Analysis.tumor_probability <= max_probability)
    if text and text.strip():
        pattern = _like_pattern(text.strip())
        statement = statement.where(
            _contains_folded(col(Analysis.case_reference), pattern)
            | _contains_folded(_latest_note_body(), pattern)
        )
    order = SORT_COLUMNS[sort_by]
    order = col(order).desc() if descending else col(order).asc()
    statement = statement.order_by(order, col(Analysis.id).desc()).limit(limit)
    return list(session.exec(statement))


def owns_analysis(session: Session, *, analysis_id: int, owner_id: int) -> bool:
    """True when ``owner_id`` owns the analysis."""
    statement = select(
        exists().where(col(Analysis.id) == analysis_id, col(Analysis.owner_id) == owner_id)
    )
    return bool(session.exec(statement).one())


def lock_own_analysis(session: Session, *, analysis_id: int, owner_id: int) -> bool:
    """Hold the analysis row until the caller's transaction ends; True when ``owner_id`` owns
    it (False, and nothing held, otherwise).

    A change that first checks the analysis (not marked entered in error) and then writes
    beside it (a note version, a corrected reference) calls this first, before any read of
    its transaction, so that it and :func:`db.clinical_corrections.mark_entered_in_error`
    take turns: a write to the row (it sets the owner it already has) takes PostgreSQL's row
    lock, which the mark's ``UPDATE`` also takes, and SQLite's write lock, so the reads after
    it see a mark committed meanwhile. Without it, a save that checked while the mark was not
    committed yet was stored after it, on both databases.
    """
    statement = (
        update(Analysis)
        .where(col(Analysis.id) == analysis_id, col(Analysis.owner_id) == owner_id)
        .values(owner_id=owner_id)
    )
    return session.exec(statement).rowcount == 1


def is_entered_in_error(session: Session, *, analysis_id: int, owner_id: int) -> bool:
    """True when ``owner_id`` owns the analysis and it was marked entered in error."""
    statement = select(
        exists().where(
            col(Analysis.id) == analysis_id,
            col(Analysis.owner_id) == owner_id,
            col(Analysis.entered_in_error_at).is_not(None),
        )
    )
    return bool(session.exec(statement).one())


def count_analyses(session: Session, *, owner_id: int) -> int:
    """How many analyses the owner has."""
    statement = select(func.count()).select_from(Analysis).where(Analysis.owner_id == owner_id)
    return int(session.exec(statement).one())


def record_case_event(
    session: Session,
    *,
    owner_id: int,
    analysis_id: int,
    action: str,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent | None:
    """Audit an action on an own analysis (view, download...); None (nothing written) when
    the analysis is not the owner's."""
    if not owns_analysis(session, analysis_id=analysis_id, owner_id=owner_id):
        return None
    return audit.record_event(
        session,
        action=action,
        actor_id=owner_id,
        target_type=TARGET_ANALYSIS,
        target_id=analysis_id,
        detail=dict(detail or {}),
    )
