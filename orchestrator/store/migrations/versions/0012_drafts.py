"""Drafts and published flow versions: who published, the YAML, the templates, the diff.

A version published in the console is recorded with its YAML as written,
its templates (JSON name -> text) and the diff against the version it
replaced; a version imported from a file is published by "file". The
draft being edited is kept per flow in `flow_drafts`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("published_by", sa.String(length=100), server_default="file", nullable=False)
        )
        batch_op.add_column(sa.Column("text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("templates", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("diff", sa.Text(), nullable=True))
    op.create_table(
        "flow_drafts",
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("templates", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", name=op.f("pk_flow_drafts")),
    )


def downgrade() -> None:
    op.drop_table("flow_drafts")
    with op.batch_alter_table("flow_versions", schema=None) as batch_op:
        batch_op.drop_column("diff")
        batch_op.drop_column("templates")
        batch_op.drop_column("text")
        batch_op.drop_column("published_by")
