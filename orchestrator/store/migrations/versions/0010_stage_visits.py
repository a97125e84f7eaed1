"""Stage visits: what the figures keep of each stage visit, written as events are processed.

A flow's funnel and outcomes are a GROUP BY over this table and the audit
(`orchestrator/store/figures.py`) instead of a read of every journey. The
rows are computed with the flow's counting rules, which a migration does
not have: `orchestrator db backfill-visits` fills them for a store that
processed events before this migration.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_visits",
        sa.Column("episode_id", sa.String(length=40), nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=200), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("stage_id", sa.Text(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ending", sa.String(length=20), nullable=False),
        sa.Column("next_stage_id", sa.Text(), nullable=True),
        sa.Column("missed", sa.Boolean(), nullable=False),
        sa.Column("attended", sa.Boolean(), nullable=False),
        sa.Column("intake_sent", sa.Boolean(), nullable=False),
        sa.Column("replied", sa.Boolean(), nullable=False),
        sa.Column("referral_hours", sa.Float(), nullable=True),
        sa.Column("episode_intake_done", sa.Boolean(), nullable=False),
        sa.Column("episode_no_show", sa.Boolean(), nullable=False),
        sa.Column("episode_replied", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("episode_id", "visit", name=op.f("pk_stage_visits")),
    )
    with op.batch_alter_table("stage_visits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stage_visits_flow_id_persona_started_at"),
            ["flow_id", "persona", "started_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_stage_visits_patient_id"), ["patient_id"], unique=False
        )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        # The message figures: per flow, each key's statuses.
        batch_op.create_index(
            batch_op.f("ix_audit_log_flow_id_message_id_status_key"),
            ["flow_id", "message_id", "status", "key"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_flow_id_message_id_status_key"))
    with op.batch_alter_table("stage_visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stage_visits_patient_id"))
        batch_op.drop_index(batch_op.f("ix_stage_visits_flow_id_persona_started_at"))
    op.drop_table("stage_visits")
