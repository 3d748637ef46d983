"""users.one_time_password_expires_at / _used_at: a reset password signs in once, within a day.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A reset made before this version carries no limits (its time is unknown); the account
    # still has to replace that password at its next sign-in (must_change_password).
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("one_time_password_expires_at", db.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("one_time_password_used_at", db.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("one_time_password_used_at")
        batch_op.drop_column("one_time_password_expires_at")
