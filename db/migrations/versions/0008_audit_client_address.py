"""audit_events.client_address: failed sign-ins are throttled by the client's network address.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Failures recorded before this version carry no address, so no address starts throttled.
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("client_address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(
            "ix_audit_address_action_time",
            ["client_address", "action", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_address_action_time")
        batch_op.drop_column("client_address")
