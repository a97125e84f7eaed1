"""Send buckets: each sender's token bucket per channel, shared by every dispatcher.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_buckets",
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sender", "channel", name=op.f("pk_send_buckets")),
    )


def downgrade() -> None:
    op.drop_table("send_buckets")
