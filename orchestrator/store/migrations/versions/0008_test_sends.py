"""Test sends: previewed messages sent to the test recipient, kept apart from patients' messages.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "test_sends",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("persona", sa.String(length=100), nullable=True),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(length=100), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_sends")),
    )
    with op.batch_alter_table("test_sends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_test_sends_flow_id"), ["flow_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("test_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_sends_flow_id"))
    op.drop_table("test_sends")
