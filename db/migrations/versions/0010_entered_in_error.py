"""analyses.entered_in_error_at and entered_in_error_reason: an analysis marked entered in
error by its owner is kept, closed and set apart, not deleted.

Analyses stored before this revision are not marked.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entered_in_error_at", db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "entered_in_error_reason",
                sqlmodel.sql.sqltypes.AutoString(length=300),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_column("entered_in_error_reason")
        batch_op.drop_column("entered_in_error_at")
