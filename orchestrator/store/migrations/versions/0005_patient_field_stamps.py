"""Patient field stamps: partial updates merge field by field, the newest fact winning.

Rows written before keep NULL: their set fields read as stated at `snapshot_at`,
their empty ones as never stated (the old code nulled what an update left out).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_stamps", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("field_stamps")
