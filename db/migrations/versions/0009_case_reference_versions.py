"""case_reference_versions: a corrected case reference keeps every earlier one.

Each existing analysis gets its version 1, the reference it has now, by its owner at the time
it was made.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_reference_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["analysis_id"], ["analyses.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("analysis_id", "version", name="uq_case_reference_version"),
    )
    with op.batch_alter_table("case_reference_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_reference_versions_analysis_id"), ["analysis_id"], unique=False
        )
    op.execute(
        "INSERT INTO case_reference_versions (analysis_id, version, reference, author_id, "
        "created_at) SELECT id, 1, case_reference, owner_id, created_at FROM analyses"
    )


def downgrade() -> None:
    with op.batch_alter_table("case_reference_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_reference_versions_analysis_id"))
    op.drop_table("case_reference_versions")
