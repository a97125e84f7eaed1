"""The audit's key tallies kept exact when two transactions reach one status of one key.

0011's row trigger and 0015's statement trigger decide whether a row is the
first of its key with its status (or the last suppression) from the rows
they can see. A transaction cannot see another's uncommitted rows: when two
open transactions each write key K reaching status S, both count K, and
where their rows fall under different tallies (another reason, day or
channel; under one tally the second waits for the first's lock on the tally
row and then sees it) `keys` says two messages where there is one. And as
ids are taken before commit, the first row in id order may commit last.

This trigger serialises the writers of one status of one message: before it
reads the audit, it takes a transaction advisory lock per (flow, message,
status) of the statement (sorted; the two-key form, so no patient lock,
`unit.lock_patients`, is ever the same lock), held to commit. A key is one
flow's one message (`fold._key` hashes both), so two writers of (K, S) take
one lock, and the second reads the audit after the first committed (each
statement of a PL/pgSQL function reads a fresh snapshot in READ COMMITTED,
the store's isolation). It then moves each (key, status) of the statement
from the tally of the row counted before it (the first of the key's other
rows in id order; for a suppression the last) to the tally of the row
counted now, all rows considered, which is a row of another transaction
when that one took a lower id yet committed first. The lock is per message
and status, not per key, so a batch takes a few of them, not one per key
(the lock table is shared and bounded); two batches of one flow's message
and status mostly share a tally row (one day) and wait for each other
already. A tally row is only locked under its (flow, message, status) lock;
a transaction of several audit statements takes the locks statement by
statement, so two such over two messages in opposite orders can deadlock,
as on 0015's tally rows where those coincided.

The tallies written so far may be wrong, so `message_tallies` is counted
again from the audit, with the audit locked against writers meanwhile.

SQLite keeps 0011's row trigger: one writer at a time sees every row before it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_DIMENSIONS = (
    "flow_id, flow_version, persona, message_id, stage_id, status, reason, language, channel, day"
)

_TALLY_DIMENSIONS = ", ".join(f"t.{d}" for d in _DIMENSIONS.split(", "))

# The first key of the two-key advisory locks: these locks' own space (0x7A11).
_LOCKS = 31249


def _rows(source: str) -> str:
    """Audit rows with their tally dimensions: persona from the episode's first
    visit, reason, language and channel '' for none, the UTC day of `at`."""
    return f"""
  SELECT a.id, a.key, a.flow_id, a.flow_version, coalesce(v.persona, '') AS persona,
    a.message_id, a.stage_id, a.status, coalesce(a.reason, '') AS reason,
    coalesce(a.language, '') AS language, coalesce(a.channel, '') AS channel,
    to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
  FROM {source} a LEFT JOIN stage_visits v ON v.episode_id = a.episode_id AND v.visit = 0
"""


_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tally_audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- One writer at a time per message and status, to its commit; the statements
  -- below read the audit after the lock is had.
  PERFORM pg_advisory_xact_lock({_LOCKS}, k) FROM (
    SELECT DISTINCT hashtext(flow_id || chr(31) || message_id || chr(31) || status) AS k
    FROM new_rows ORDER BY k) AS locks;

  INSERT INTO message_tallies ({_DIMENSIONS}, records, keys)
  SELECT {_DIMENSIONS}, count(*), 0 FROM ({_rows("new_rows")}) n
  GROUP BY {_DIMENSIONS} ORDER BY {_DIMENSIONS}
  ON CONFLICT ({_DIMENSIONS}) DO UPDATE SET records = message_tallies.records + excluded.records;

  WITH mine AS (
    SELECT key, status, array_agg(id) AS ids FROM new_rows GROUP BY key, status
  ),
  counted AS (
    SELECT
      CASE WHEN m.status = 'suppressed' THEN o.last_before ELSE o.first_before END AS before,
      CASE WHEN m.status = 'suppressed' THEN o.last ELSE o.first END AS after
    FROM mine m CROSS JOIN LATERAL (
      SELECT min(a.id) FILTER (WHERE a.id <> ALL (m.ids)) AS first_before, min(a.id) AS first,
        max(a.id) FILTER (WHERE a.id <> ALL (m.ids)) AS last_before, max(a.id) AS last
      FROM audit_log a WHERE a.key = m.key AND a.status = m.status) o
  ),
  moves AS (
    SELECT after AS id, 1 AS change FROM counted WHERE before IS DISTINCT FROM after
    UNION ALL
    SELECT before, -1 FROM counted WHERE before <> after
  ),
  summed AS (
    SELECT {_DIMENSIONS}, sum(m.change) AS change
    FROM moves m JOIN ({_rows("audit_log")}) r ON r.id = m.id
    GROUP BY {_DIMENSIONS} HAVING sum(m.change) <> 0
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
"""

# Every tally from the audit: `records` its rows, `keys` the first row of each
# (key, status) in id order, or a suppression's last.
_RECOUNT = f"""
INSERT INTO message_tallies ({_DIMENSIONS}, records, keys)
SELECT {_DIMENSIONS}, count(*), count(*) FILTER (WHERE nth = 1) FROM (
  SELECT r.*, row_number() OVER (PARTITION BY r.key, r.status
    ORDER BY CASE WHEN r.status = 'suppressed' THEN -r.id ELSE r.id END) AS nth
  FROM ({_rows("audit_log")}) r
) counted
GROUP BY {_DIMENSIONS}
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Writers with the old trigger finish first, and none starts until this commits.
    op.execute("LOCK TABLE audit_log IN SHARE MODE")
    op.execute(_FUNCTION)
    op.execute("DELETE FROM message_tallies")
    op.execute(_RECOUNT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS tally_audit_rows ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS tally_audit_rows()")
    for statement in _statement_trigger():
        op.execute(statement)


def _statement_trigger() -> list[str]:
    """Migration 0015's statement trigger, as it made it."""
    path = Path(__file__).with_name("0015_audit_tally_per_statement.py")
    spec = importlib.util.spec_from_file_location("_migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements: list[str] = module._POSTGRESQL
    return statements
