"""The audit tallied once per statement on PostgreSQL, not once per row.

Migration 0011's `tally_audit` ran a PL/pgSQL function for every audit row:
four to six statements each, two of them updates of one hot `message_tallies`
row, which in one batch's transaction is updated again and again. The unit
of work now writes a batch's audit in one statement; this trigger tallies
that statement's rows (its transition table) in three set statements. The
tallies are the same as row by row in id order: `records` counts every row;
`keys` counts a row whose key reached that status for the first time (no
earlier row of the key with the status; a row earlier in the same statement
counts as earlier), and a suppression always, moving the key off the tally
of the key's previous suppression (with the new row's persona, as 0011 did);
`sent_stages` gets each (episode, stage) sent. The row trigger, at the end
of a multi-row statement, would see the statement's later rows as well and
count a key reaching a status twice in one statement zero times.

Two workers whose batches share tally rows (one flow, one day) take the
rows' locks in one order, the dimensions': the insert of `records` goes
through them sorted, and `keys` locks its rows sorted (`FOR UPDATE`) before
it updates them. (The update's rows beyond the insert's, a suppression's
previous tally, are locked after the insert's: not one order across both.)

SQLite keeps 0011's row trigger: its executemany runs in-process, one row
after another.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_DIMENSIONS = (
    "flow_id, flow_version, persona, message_id, stage_id, status, reason, language, channel, day"
)

_TALLY_DIMENSIONS = ", ".join(f"t.{d}" for d in _DIMENSIONS.split(", "))

# The new rows with their tally dimensions: persona from the episode's first
# visit, reason, language and channel '' for none, the UTC day of `at`.
_NEW = """
  SELECT n.id, n.key, n.episode_id, n.flow_id, n.flow_version,
    coalesce(v.persona, '') AS persona, n.message_id, n.stage_id, n.status,
    coalesce(n.reason, '') AS reason, coalesce(n.language, '') AS language,
    coalesce(n.channel, '') AS channel, to_char(n.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
  FROM new_rows n LEFT JOIN stage_visits v ON v.episode_id = n.episode_id AND v.visit = 0
"""

_POSTGRESQL = [
    "DROP TRIGGER IF EXISTS tally_audit ON audit_log",
    "DROP FUNCTION IF EXISTS tally_audit()",
    f"""
CREATE FUNCTION tally_audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_tallies ({_DIMENSIONS}, records, keys)
  SELECT {_DIMENSIONS}, count(*), 0 FROM ({_NEW}) n
  GROUP BY {_DIMENSIONS} ORDER BY {_DIMENSIONS}
  ON CONFLICT ({_DIMENSIONS}) DO UPDATE SET records = message_tallies.records + excluded.records;

  WITH n AS ({_NEW}),
  moves AS (
    SELECT {_DIMENSIONS}, 1 AS change FROM n
    WHERE n.status = 'suppressed' OR NOT EXISTS (
      SELECT 1 FROM audit_log a WHERE a.key = n.key AND a.status = n.status AND a.id < n.id)
    UNION ALL
    SELECT prev.flow_id, prev.flow_version, n.persona, prev.message_id, prev.stage_id,
      prev.status, coalesce(prev.reason, ''), coalesce(prev.language, ''),
      coalesce(prev.channel, ''), to_char(prev.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), -1
    FROM n CROSS JOIN LATERAL (
      SELECT * FROM audit_log a
      WHERE a.key = n.key AND a.status = 'suppressed' AND a.id < n.id
      ORDER BY a.id DESC LIMIT 1) prev
    WHERE n.status = 'suppressed'
  ),
  summed AS (
    SELECT {_DIMENSIONS}, sum(change) AS change FROM moves GROUP BY {_DIMENSIONS}
    HAVING sum(change) <> 0
  ),
  locked AS MATERIALIZED (
    SELECT {_TALLY_DIMENSIONS}, s.change FROM message_tallies t JOIN summed s
    ON ({_TALLY_DIMENSIONS}) = (s.flow_id, s.flow_version, s.persona, s.message_id,
      s.stage_id, s.status, s.reason, s.language, s.channel, s.day)
    ORDER BY {_TALLY_DIMENSIONS} FOR UPDATE OF t
  )
  UPDATE message_tallies t SET keys = t.keys + l.change
  FROM locked l
  WHERE ({_TALLY_DIMENSIONS}) = (l.flow_id, l.flow_version, l.persona, l.message_id,
    l.stage_id, l.status, l.reason, l.language, l.channel, l.day);

  INSERT INTO sent_stages (episode_id, stage_id, flow_id)
  SELECT DISTINCT ON (episode_id, stage_id) episode_id, stage_id, flow_id
  FROM new_rows WHERE status = 'sent' ORDER BY episode_id, stage_id, id
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$$
""",
    "CREATE TRIGGER tally_audit_rows AFTER INSERT ON audit_log"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tally_audit_rows()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRESQL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS tally_audit_rows ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS tally_audit_rows()")
    for statement in _row_trigger():
        op.execute(statement)


def _row_trigger() -> list[str]:
    """Migration 0011's row trigger, as it made it."""
    path = Path(__file__).with_name("0011_stage_visits.py")
    spec = importlib.util.spec_from_file_location("_migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements: list[str] = module._POSTGRESQL
    return statements
