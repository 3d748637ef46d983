"""SQLModel tables: every table BrainLoc has, in one place.

Accounts (``practitioner_categories``, ``users``) and the audit log (``audit_events``) are
written by :mod:`db.users` and :mod:`db.audit`; the clinical tables (``analyses``,
``analysis_slices``, ``note_versions``, ``issued_reports``, ``case_reference_versions``) by
:mod:`db.clinical` and the modules beside it.

Design choices:

* Timestamps are aware UTC datetimes (:class:`db.types.UTCDateTime`).
* A scan is stored losslessly inside the database as ``.npz`` bytes of the exact array the
  pipeline saw (any dtype/shape; see :mod:`db.arrays`) with its SHA-256, one row per slice in
  ``analysis_slices``. Keeping it in the database makes an analysis and its scan one atomic
  write (never a partial save) and works the same on SQLite and PostgreSQL.
* Notes are never overwritten: each edit is a new ``note_versions`` row pointing at its
  parent; ``(analysis_id, version)`` is unique, so two tabs saving on the same parent cannot
  both win silently.
* A case reference is corrected, never overwritten without a trace: ``analyses.case_reference``
  holds the current one (what History searches and sorts), and ``case_reference_versions``
  every reference the analysis has had, version 1 being the one given at upload; it is unique
  on ``(analysis_id, version)`` like the notes, for the same reason.
* An analysis entered in error is marked (``entered_in_error_at`` and a reason), not deleted.
* An issued report keeps its PDF bytes, so downloading it later returns the same bytes.
* Roles and statuses are plain strings with CHECK constraints (portable, no native enums).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from db.types import UTCDateTime, utc_now

ROLE_PRACTITIONER = "practitioner"
ROLE_ADMIN = "admin"
ROLES = (ROLE_PRACTITIONER, ROLE_ADMIN)

STATUS_PENDING = "pending"
STATUS_APPROVED = "approved"
STATUS_REJECTED = "rejected"
STATUS_DISABLED = "disabled"
STATUSES = (STATUS_PENDING, STATUS_APPROVED, STATUS_REJECTED, STATUS_DISABLED)

#: Seeded by the first migration: (code, label) in display order.
PRACTITIONER_CATEGORIES = (
    ("radiologist", "Radiologist"),
    ("neuroradiologist", "Neuroradiologist"),
    ("neurosurgeon", "Neurosurgeon"),
    ("neurologist", "Neurologist"),
    ("oncologist", "Oncologist"),
    ("radiation_oncologist", "Radiation oncologist"),
    ("pathologist", "Pathologist"),
    ("resident_physician", "Resident physician"),
    ("medical_researcher", "Medical researcher / lab researcher"),
)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    """A timestamp field; non-nullable ones default to now."""
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True, index=index))
    return Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False, index=index)
    )


class PractitionerCategory(SQLModel, table=True):
    """A qualification a practitioner registers under (seeded, admin-visible)."""

    __tablename__ = "practitioner_categories"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    label: str = Field(max_length=80)
    sort_order: int = Field(default=0)


class User(SQLModel, table=True):
    """An account: a practitioner (after approval) or an administrator."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('practitioner', 'admin')", name="ck_users_role"),
        CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'disabled')", name="ck_users_status"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=32, unique=True, index=True)
    full_name: str = Field(max_length=120)
    email: str = Field(max_length=254, unique=True, index=True)
    password_hash: str = Field(max_length=100)
    role: str = Field(default=ROLE_PRACTITIONER, max_length=20)
    status: str = Field(default=STATUS_PENDING, max_length=20, index=True)
    category_id: int | None = Field(default=None, foreign_key="practitioner_categories.id")
    licence_number: str = Field(default="", max_length=60)
    institution: str = Field(default="", max_length=160)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    status_changed_at: datetime | None = _ts(nullable=True)
    status_changed_by_id: int | None = Field(default=None, foreign_key="users.id")
    last_login_at: datetime | None = _ts(nullable=True)
    # Failed-login bookkeeping. The count of recent failures is read from the audit log
    # (exact sliding window); the lock itself lives here so it survives restarts.
    last_failed_login_at: datetime | None = _ts(nullable=True)
    locked_until: datetime | None = _ts(nullable=True)
    # Sign-in cookies issued before this moment are refused (set on sign-out and when an
    # administrator disables the account), because the browser may keep a cookie we asked
    # it to delete.
    sessions_revoked_at: datetime | None = _ts(nullable=True)
    # Every sign-in made before this moment ends, live browser sessions included, not only
    # remembered ones: set when the password is changed or reset, when two-step sign-in is
    # turned on or reset, and by "End all other sessions" (:func:`brainloc.accounts.end_sign_ins`).
    sessions_ended_at: datetime | None = _ts(nullable=True)
    # The account's last activity in any browser session (a sign-in, or a run someone caused,
    # written at most about once a minute per session; :mod:`ui.idle`). A remembered sign-in
    # is refused once the idle limit has passed since then (``brainloc.auth.user_from_cookie``),
    # so closing the tab does not escape the idle sign-out.
    last_active_at: datetime | None = _ts(nullable=True)
    # Set when someone other than the user chose the password (a reset's one-time password,
    # the demo command's generated one); until the user picks their own, every page but the
    # Account page refuses them.
    must_change_password: bool = Field(default=False)
    # A password reset's one-time password (:func:`brainloc.account_admin.reset_password`)
    # signs in until this moment, and only once: the first sign-in with it sets
    # ``one_time_password_used_at``. Both are None when the password is the user's own (or the
    # demo command's, which has no such limits).
    one_time_password_expires_at: datetime | None = _ts(nullable=True)
    one_time_password_used_at: datetime | None = _ts(nullable=True)
    # Two-step sign-in (TOTP, RFC 6238; :mod:`brainloc.two_step`). The base32 secret the
    # user's authenticator app shares; None while two-step sign-in is off.
    totp_secret: str | None = Field(default=None, max_length=64)
    totp_enabled_at: datetime | None = _ts(nullable=True)
    # The last 30-second time step a code was accepted for: a code is never accepted twice.
    totp_last_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # SHA-256 hex digests of the unused recovery codes (each works once).
    recovery_code_hashes: list[str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )


class Analysis(SQLModel, table=True):
    """One analysis of one upload (a slice or a whole case) for its owner."""

    __tablename__ = "analyses"
    __table_args__ = (Index("ix_analyses_owner_created", "owner_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="users.id", index=True)
    case_reference: str = Field(max_length=200, index=True)
    created_at: datetime = _ts(index=True)
    source_name: str = Field(default="", max_length=500)
    source_format: str = Field(default="", max_length=40)
    slice_count: int = Field(default=1)
    classifier_name: str = Field(default="", max_length=80)
    classifier_version: str = Field(default="", max_length=40)
    segmenter_name: str = Field(default="", max_length=80)
    segmenter_version: str = Field(default="", max_length=40)
    decision_threshold: float = Field(default=0.5)
    # The arithmetic the models ran in ("float32" or "bfloat16", brainloc.inference); empty for
    # analyses stored before it was recorded, which all ran in float32.
    arithmetic: str = Field(default="", max_length=16)
    # Case level: the highest slice probability and whether any slice was called tumor.
    tumor_probability: float = Field(default=0.0)
    has_tumor: bool = Field(default=False)
    findings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Set when its owner marked it "entered in error" (the wrong scan, the wrong patient): it
    # stays stored and readable, but is closed to changes and left out of History's default
    # view and of follow-up comparison (:mod:`db.clinical_corrections`). Final: never unset.
    entered_in_error_at: datetime | None = _ts(nullable=True)
    entered_in_error_reason: str = Field(default="", max_length=300)


class AnalysisSlice(SQLModel, table=True):
    """One slice of an analysis: the lossless scan, its mask and its per-slice results."""

    __tablename__ = "analysis_slices"
    __table_args__ = (UniqueConstraint("analysis_id", "slice_index", name="uq_slice_position"),)

    id: int | None = Field(default=None, primary_key=True)
    analysis_id: int = Field(foreign_key="analyses.id", index=True)
    slice_index: int = Field(default=0)
    source_name: str = Field(default="", max_length=500)
    # np.savez_compressed bytes (key "array") of the scan exactly as analysed; see db.arrays.
    image: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    image_sha256: str = Field(max_length=64)
    height: int
    width: int
    # H x W bool mask at the scan's size (empty when the slice was called negative).
    mask: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    tumor_probability: float = Field(default=0.0)
    has_tumor: bool = Field(default=False)
    pixel_spacing_row_mm: float | None = Field(default=None)
    pixel_spacing_col_mm: float | None = Field(default=None)
    slice_thickness_mm: float | None = Field(default=None)
    findings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class NoteVersion(SQLModel, table=True):
    """One version of the note on an analysis; edits add rows, nothing is overwritten."""

    __tablename__ = "note_versions"
    __table_args__ = (UniqueConstraint("analysis_id", "version", name="uq_note_version"),)

    id: int | None = Field(default=None, primary_key=True)
    analysis_id: int = Field(foreign_key="analyses.id", index=True)
    version: int
    parent_id: int | None = Field(default=None, foreign_key="note_versions.id")
    author_id: int = Field(foreign_key="users.id")
    body: str = Field(default="")
    created_at: datetime = _ts()


class CaseReferenceVersion(SQLModel, table=True):
    """One case reference an analysis has had: version 1 at upload, each correction the next.

    The newest version's ``reference`` is the analysis's ``case_reference``.
    """

    __tablename__ = "case_reference_versions"
    __table_args__ = (UniqueConstraint("analysis_id", "version", name="uq_case_reference_version"),)

    id: int | None = Field(default=None, primary_key=True)
    analysis_id: int = Field(foreign_key="analyses.id", index=True)
    version: int
    reference: str = Field(max_length=200)
    author_id: int = Field(foreign_key="users.id")
    created_at: datetime = _ts()


class IssuedReport(SQLModel, table=True):
    """A PDF report as issued: its exact bytes, author, time and the note version inside."""

    __tablename__ = "issued_reports"

    id: int | None = Field(default=None, primary_key=True)
    analysis_id: int = Field(foreign_key="analyses.id", index=True)
    author_id: int = Field(foreign_key="users.id")
    created_at: datetime = _ts()
    note_version_id: int | None = Field(default=None, foreign_key="note_versions.id")
    filename: str = Field(max_length=200)
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64)


class AuditEvent(SQLModel, table=True):
    """Who did what to which record, and when. Rows are only ever added."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_actor_action_time", "actor_id", "action", "created_at"),
        Index("ix_audit_address_action_time", "client_address", "action", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts(index=True)
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    action: str = Field(max_length=40, index=True)
    target_type: str | None = Field(default=None, max_length=40)
    target_id: int | None = Field(default=None)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The client's network address of an event that counts towards that address's throttle:
    # a failed sign-in (:mod:`brainloc.sign_in_throttle`), a registration or a refused one
    # (:mod:`brainloc.registration_throttle`); None on every other event. A column of its
    # own, indexed, because the throttles count by it on every sign-in and registration, and
    # JSON ``detail`` is queried differently on SQLite and PostgreSQL and cannot share one
    # index.
    client_address: str | None = Field(default=None, max_length=64)
