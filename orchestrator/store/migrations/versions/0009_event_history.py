"""Event history: each processed event keeps its canonical body, indexed by occurrence.

The body is what a what-if replays (`orchestrator.whatif`); rows processed
before this migration keep NULL and are not replayed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_processed_events_occurred_at_event_id"),
            ["occurred_at", "event_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_events_occurred_at_event_id"))
        batch_op.drop_column("body")
