"""The due-claim reads due messages in its own order: (status, due_at, key).

The dispatcher claims due messages ordered by due time, ties broken by key.
The index on (status, due_at) left the key to a sort of every message due
at the first instant: with 20,000 due at one instant (a clinic's reminders
at 09:00, or quiet hours ending) each claim of 100 read and sorted all
20,000 (about 600 ms on PostgreSQL, 1M pending). With the key in the index
a claim reads its 100 rows in order (under 1 ms). The new index serves
everything the old one did, so it replaces it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 22:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduled_messages_status_due_at_key"),
            ["status", "due_at", "key"],
            unique=False,
        )
        batch_op.drop_index(batch_op.f("ix_scheduled_messages_status_due_at"))


def downgrade() -> None:
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduled_messages_status_due_at"), ["status", "due_at"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_scheduled_messages_status_due_at_key"))
