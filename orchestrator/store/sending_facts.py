"""What the dispatcher reads about the recipients of a batch of due messages (`SendingFacts`).

One read on the connection it is given: the ledger runs it in one snapshot.
A stored patient or journey that does not read back is named with why, so
its messages fail alone instead of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..event import Channel, Patient
from ..journey import Journey, ScheduledMessage
from ..policies import ConsentRecord
from ..ports import SendingFacts
from . import codec
from .rows import chunks
from .tables import ConsentRow, JourneyRow, PatientRow, ScheduledMessageRow

__all__ = ["read_sending_facts"]


def read_sending_facts(
    c: Connection, messages: Sequence[ScheduledMessage], since: datetime
) -> SendingFacts:
    """The patients, consent and sends since `since` of `messages`' recipients, and their journeys."""
    patient_ids = sorted({m.recipient.patient_id for m in messages})
    wanted = {(m.recipient.patient_id, m.flow_id, m.flow_version) for m in messages}
    flow_ids = sorted({m.flow_id for m in messages})
    facts = SendingFacts({}, {}, {}, {})
    table = ScheduledMessageRow
    for ids in chunks(patient_ids, 500):
        for pid, snapshot in c.execute(
            select(PatientRow.id, PatientRow.snapshot).where(PatientRow.id.in_(ids))
        ):
            try:
                facts.patients[pid] = codec.loads(Patient, snapshot)
            except (ValidationError, ValueError, RecursionError) as exc:
                facts.unreadable_patients[pid] = f"decode:patient:{exc.__class__.__name__}"
        for pid, recipient, ch, granted, at, source in c.execute(
            select(
                ConsentRow.patient_id,
                ConsentRow.recipient,
                ConsentRow.channel,
                ConsentRow.granted,
                ConsentRow.at,
                ConsentRow.source,
            ).where(ConsentRow.patient_id.in_(ids))
        ):
            channel = Channel(ch)
            facts.consent.setdefault((pid, recipient), {})[channel] = ConsentRecord(
                channel, granted, at, source
            )
        for pid, recipient, via, sent_at in c.execute(
            select(table.patient_id, table.recipient, table.channel, table.sent_at).where(
                table.patient_id.in_(ids), table.sent_at >= since
            )
        ):
            if via is not None and sent_at is not None:
                by_channel = facts.sent.setdefault((pid, recipient), {})
                by_channel.setdefault(Channel(via), []).append(sent_at)
        for pid, flow_id, version, state in c.execute(
            select(
                JourneyRow.patient_id,
                JourneyRow.flow_id,
                JourneyRow.flow_version,
                JourneyRow.state,
            ).where(JourneyRow.patient_id.in_(ids), JourneyRow.flow_id.in_(flow_ids))
        ):
            # Only the journeys the messages belong to: decoding one is not free.
            if (pid, flow_id, version) not in wanted:
                continue
            try:
                facts.journeys[(pid, flow_id, version)] = codec.loads(Journey, state)
            except (ValidationError, ValueError, RecursionError) as exc:
                reason = f"decode:journey:{exc.__class__.__name__}"
                facts.unreadable_journeys[(pid, flow_id, version)] = reason
    return facts
