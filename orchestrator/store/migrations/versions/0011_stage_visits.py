"""Stage visits and audit tallies: what the figures keep as events are processed.

A flow's funnel and outcomes are a GROUP BY over this table and the audit
(`orchestrator/store/figures.py`) instead of a read of every journey. The
rows are computed with the flow's counting rules, which a migration does
not have: a store that processed events before this migration has no visits
for them. The audit is tallied by a trigger as it is written
(`message_tallies`, `sent_stages`), so every writer of the audit (the unit of
work, the delivery ledger, provider feedback) keeps the tallies without
knowing of them; existing audit rows are tallied here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
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
    op.create_index(
        "ix_stage_visits_funnel",
        "stage_visits",
        [
            "flow_id",
            "persona",
            "flow_version",
            "started_at",
            "stage_id",
            "ending",
            "next_stage_id",
            "missed",
            "attended",
        ],
    )
    first = ["flow_id", "episode_id", "persona", "flow_version", "started_at", "patient_id"]
    first += ["episode_intake_done", "episode_no_show", "episode_replied"]
    _partial("ix_stage_visits_first", first, "visit = 0")
    _partial("ix_stage_visits_replied", ["flow_id", "episode_id", "stage_id"], "replied")
    _partial("ix_stage_visits_intake_sent", ["flow_id", "episode_id", "stage_id"], "intake_sent")
    _partial(
        "ix_stage_visits_referral",
        ["flow_id", "stage_id", "referral_hours"],
        "referral_hours IS NOT NULL",
    )
    op.create_index("ix_stage_visits_patient_id", "stage_visits", ["patient_id"])
    op.create_table(
        "message_tallies",
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("persona", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("stage_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("keys", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "flow_id",
            "flow_version",
            "persona",
            "message_id",
            "stage_id",
            "status",
            "reason",
            "language",
            "channel",
            "day",
            name=op.f("pk_message_tallies"),
        ),
    )
    op.create_table(
        "sent_stages",
        sa.Column("episode_id", sa.String(length=40), nullable=False),
        sa.Column("stage_id", sa.String(length=100), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("episode_id", "stage_id", name=op.f("pk_sent_stages")),
    )
    op.create_index("ix_sent_stages_flow", "sent_stages", ["flow_id", "stage_id", "episode_id"])
    op.create_table(
        "intake_requests",
        sa.Column("episode_id", sa.String(length=40), nullable=False),
        sa.Column("stage_id", sa.String(length=100), nullable=False),
        sa.Column("flow_id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("episode_id", "stage_id", name=op.f("pk_intake_requests")),
    )
    op.create_index(
        "ix_intake_requests_flow", "intake_requests", ["flow_id", "stage_id", "episode_id"]
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        # Intake requests and holdout groups: a few messages' rows, from the index alone.
        batch_op.create_index(
            _AUDIT_INDEX,
            ["flow_id", "message_id", "status", "episode_id", "stage_id", "recipient", "reason"],
            unique=False,
        )
    # After the index: a batch alteration of audit_log on SQLite could rebuild the
    # table, and a rebuilt table has no triggers.
    for statement in _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)
    _tally_existing()


_AUDIT_INDEX = "ix_audit_log_flow_messages"


def _partial(name: str, columns: list[str], where: str) -> None:
    condition = sa.text(where)
    op.create_index(
        name, "stage_visits", columns, postgresql_where=condition, sqlite_where=condition
    )


_DIMENSIONS = (
    "flow_id, flow_version, persona, message_id, stage_id, status, reason, language, channel, day"
)

# One statement each (SQLite's driver runs one at a time). A row's persona is its
# episode's (the visit it started with); an audit row of an episode without visits
# (none is written so) counts under no persona.
_SQLITE = [
    f"""
CREATE TRIGGER tally_audit AFTER INSERT ON audit_log BEGIN
  INSERT INTO message_tallies ({_DIMENSIONS}, records, keys)
  VALUES (NEW.flow_id, NEW.flow_version,
    coalesce((SELECT persona FROM stage_visits WHERE episode_id = NEW.episode_id AND visit = 0), ''),
    NEW.message_id, NEW.stage_id, NEW.status, coalesce(NEW.reason, ''),
    coalesce(NEW.language, ''), coalesce(NEW.channel, ''), substr(NEW.at, 1, 10), 1, 0)
  ON CONFLICT ({_DIMENSIONS}) DO UPDATE SET records = records + 1;
  UPDATE message_tallies SET keys = keys - 1
  WHERE NEW.status = 'suppressed'
    AND ({_DIMENSIONS}) = (
      SELECT a.flow_id, a.flow_version,
        coalesce((SELECT persona FROM stage_visits WHERE episode_id = a.episode_id AND visit = 0), ''),
        a.message_id, a.stage_id, a.status, coalesce(a.reason, ''),
        coalesce(a.language, ''), coalesce(a.channel, ''), substr(a.at, 1, 10)
      FROM audit_log a WHERE a.key = NEW.key AND a.status = 'suppressed' AND a.id < NEW.id
      ORDER BY a.id DESC LIMIT 1);
  UPDATE message_tallies SET keys = keys + 1
  WHERE flow_id = NEW.flow_id AND flow_version = NEW.flow_version
    AND persona = coalesce(
      (SELECT persona FROM stage_visits WHERE episode_id = NEW.episode_id AND visit = 0), '')
    AND message_id = NEW.message_id AND stage_id = NEW.stage_id AND status = NEW.status
    AND reason = coalesce(NEW.reason, '') AND language = coalesce(NEW.language, '')
    AND channel = coalesce(NEW.channel, '') AND day = substr(NEW.at, 1, 10)
    AND (NEW.status = 'suppressed' OR NOT EXISTS (
      SELECT 1 FROM audit_log a WHERE a.key = NEW.key AND a.status = NEW.status AND a.id <> NEW.id));
  INSERT OR IGNORE INTO sent_stages (episode_id, stage_id, flow_id)
  SELECT NEW.episode_id, NEW.stage_id, NEW.flow_id WHERE NEW.status = 'sent';
END
""",
]

_POSTGRESQL = [
    f"""
CREATE FUNCTION tally_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  p text;
  prev audit_log%ROWTYPE;
BEGIN
  SELECT coalesce(persona, '') INTO p FROM stage_visits
  WHERE episode_id = NEW.episode_id AND visit = 0;
  p := coalesce(p, '');
  INSERT INTO message_tallies ({_DIMENSIONS}, records, keys)
  VALUES (NEW.flow_id, NEW.flow_version, p, NEW.message_id, NEW.stage_id, NEW.status,
    coalesce(NEW.reason, ''), coalesce(NEW.language, ''), coalesce(NEW.channel, ''),
    to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 1, 0)
  ON CONFLICT ({_DIMENSIONS}) DO UPDATE SET records = message_tallies.records + 1;
  IF NEW.status = 'suppressed' THEN
    SELECT * INTO prev FROM audit_log
    WHERE key = NEW.key AND status = 'suppressed' AND id < NEW.id ORDER BY id DESC LIMIT 1;
    IF FOUND THEN
      UPDATE message_tallies SET keys = keys - 1
      WHERE flow_id = prev.flow_id AND flow_version = prev.flow_version AND persona = p
        AND message_id = prev.message_id AND stage_id = prev.stage_id AND status = prev.status
        AND reason = coalesce(prev.reason, '') AND language = coalesce(prev.language, '')
        AND channel = coalesce(prev.channel, '')
        AND day = to_char(prev.at AT TIME ZONE 'UTC', 'YYYY-MM-DD');
    END IF;
  ELSIF EXISTS (
    SELECT 1 FROM audit_log WHERE key = NEW.key AND status = NEW.status AND id <> NEW.id
  ) THEN
    RETURN NULL;
  END IF;
  UPDATE message_tallies SET keys = keys + 1
  WHERE flow_id = NEW.flow_id AND flow_version = NEW.flow_version AND persona = p
    AND message_id = NEW.message_id AND stage_id = NEW.stage_id AND status = NEW.status
    AND reason = coalesce(NEW.reason, '') AND language = coalesce(NEW.language, '')
    AND channel = coalesce(NEW.channel, '')
    AND day = to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD');
  IF NEW.status = 'sent' THEN
    INSERT INTO sent_stages (episode_id, stage_id, flow_id)
    VALUES (NEW.episode_id, NEW.stage_id, NEW.flow_id) ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$
""",
    "CREATE TRIGGER tally_audit AFTER INSERT ON audit_log"
    " FOR EACH ROW EXECUTE FUNCTION tally_audit()",
]


def _tally_existing() -> None:
    """Replay the audit already written through the trigger, in order."""
    columns = (
        "at, event_id, patient_id, flow_id, flow_version, episode_id, stage_id, message_id,"
        " key, recipient, channel, language, template, due_at, status, reason"
    )
    op.execute("CREATE TEMPORARY TABLE audit_before AS SELECT * FROM audit_log")
    op.execute("DELETE FROM audit_log")
    op.execute(
        f"INSERT INTO audit_log (id, {columns}) SELECT id, {columns} FROM audit_before ORDER BY id"
    )
    op.execute("DROP TABLE audit_before")


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS tally_audit"
        + (" ON audit_log" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tally_audit()")
    op.drop_table("intake_requests")
    op.drop_table("sent_stages")
    op.drop_table("message_tallies")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(_AUDIT_INDEX)
    op.drop_table("stage_visits")
