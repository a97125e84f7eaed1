"""Imports of history: messages their events schedule wait until the import closes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hold_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_id", sa.String(length=40), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_scheduled_messages_import_id"), ["import_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduled_messages_import_id"))
        batch_op.drop_column("import_id")
    op.drop_table("imports")
