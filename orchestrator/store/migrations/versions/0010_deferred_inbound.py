"""The inbound archive keeps the deferred intake too: `protocol` is `deferred:<source>`.

A send thread's opt-out (Twilio 21610) is committed here before the send
returns (`IntakeQueue`), under a protocol such as `deferred:feedback:twilio`,
longer than the 20 characters `hl7v2` and `fhir` needed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "protocol", existing_type=sa.String(length=20), type_=sa.String(length=64)
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "protocol", existing_type=sa.String(length=64), type_=sa.String(length=20)
        )
