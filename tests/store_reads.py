"""What only tests read of a store, or do to it: on the SQL store, queries of its tables.

The runtime never calls these, so the store does not offer them: each takes
either store and, for the SQL one, reads its tables in a transaction of the
store's own (`SqlStore.transactions`). The in-memory store answers from what
it keeps.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from orchestrator.event import Channel, Patient
from orchestrator.journey import Journey
from orchestrator.memory_store import MemoryStore
from orchestrator.policies import ConsentRecord
from orchestrator.ports import RejectedInput
from orchestrator.store import SqlStore, codec
from orchestrator.store.tables import (
    Base,
    ConsentRow,
    JourneyRow,
    PatientRow,
    RejectedInputRow,
)

Store = SqlStore | MemoryStore


def rejected(store: Store, limit: int = 100) -> list[RejectedInput]:
    """The newest rejected inputs, newest first."""
    if isinstance(store, MemoryStore):
        return store.rejected(limit)
    with store.transactions.read() as c:
        rows = c.execute(
            select(RejectedInputRow).order_by(RejectedInputRow.id.desc()).limit(limit)
        ).all()
        return [
            RejectedInput(r.id, r.received_at, r.source, r.reason, r.body, r.truncated)
            for r in rows
        ]


def patient(store: Store, patient_id: str) -> Patient | None:
    if isinstance(store, MemoryStore):
        return store.patient(patient_id)
    with store.transactions.read() as c:
        snapshot = c.execute(
            select(PatientRow.snapshot).where(PatientRow.id == patient_id)
        ).scalar_one_or_none()
    return codec.loads(Patient, snapshot) if snapshot else None


def consent(store: Store, patient_id: str, recipient: str) -> dict[Channel, ConsentRecord]:
    if isinstance(store, MemoryStore):
        return store.consent(patient_id, recipient)
    with store.transactions.read() as c:
        rows = c.execute(
            select(ConsentRow.channel, ConsentRow.granted, ConsentRow.at, ConsentRow.source).where(
                ConsentRow.patient_id == patient_id, ConsentRow.recipient == recipient
            )
        )
        return {
            Channel(ch): ConsentRecord(Channel(ch), granted, at, source)
            for ch, granted, at, source in rows
        }


def journey(store: Store, patient_id: str, flow_id: str, version: int) -> Journey | None:
    if isinstance(store, MemoryStore):
        return store.journey(patient_id, flow_id, version)
    with store.transactions.read() as c:
        state = c.execute(
            select(JourneyRow.state).where(
                JourneyRow.patient_id == patient_id,
                JourneyRow.flow_id == flow_id,
                JourneyRow.flow_version == version,
            )
        ).scalar_one_or_none()
    return codec.loads(Journey, state) if state else None


def patient_journeys(store: Store, patient_id: str) -> list[tuple[int, Journey]]:
    """Every journey of the patient, settled episodes included (both stores have it now)."""
    return store.patient_journeys(patient_id)


def begin_send(store: Store, key: str, owner: str, channel: Channel, now: datetime) -> int | None:
    """Mark one claimed message as being sent; its attempt number, or None when its claim was lost."""
    return store.begin_sends({key: channel}, owner, now).get(key)


def purge(store: Store) -> None:
    """Delete every row."""
    if isinstance(store, MemoryStore):
        store.purge()
        return
    with store.transactions.write() as c:
        # Every table the schema has, so a new one is never left behind.
        for table in reversed(Base.metadata.sorted_tables):
            c.execute(delete(table))
