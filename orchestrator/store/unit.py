"""The unit of work: what one batch of events reads and writes, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, and_, bindparam, case, delete, or_, select, text, update
from sqlalchemy.engine import Connection

from ..decisions import DecisionRecord, record
from ..event import Event, Patient
from ..journey import Episode, EpisodeStatus, Journey, ScheduledMessage
from ..message_status import PENDING, MessageStatus, allowed, sources
from ..patient_merge import KnownPatient, Stamp
from ..policies import PACED, ConsentRecord
from ..ports import ImportHold
from ..visit_facts import VisitFacts
from . import codec
from .among import among
from .bulk import insert_rows, upsert
from .rows import audit_row, chunks, locking_in_key_order, message_row, visit_row
from .tables import (
    AuditRow,
    ConsentRow,
    EpisodeRow,
    IntakeRequestRow,
    JourneyRow,
    PatientRow,
    ProcessedEventRow,
    ScheduledMessageRow,
    StageVisitRow,
)

__all__ = ["ImportHold", "UnitOfWork"]


@dataclass
class UnitOfWork:
    """What one batch of events reads and writes, committed together.

    Reads go to the database at once; writes are collected and flushed in
    bulk when the unit commits.
    """

    connection: Connection
    now: datetime
    hold: ImportHold | None = None
    _patients: dict[str, KnownPatient] = field(default_factory=dict)
    _consents: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _journeys: dict[tuple[str, str, int], Journey] = field(default_factory=dict)
    _settled: list[dict[str, Any]] = field(default_factory=list)
    _processed: list[dict[str, Any]] = field(default_factory=list)
    # Episodes whose stage visits are rewritten, and their visits (`save_visits`).
    _visited: list[str] = field(default_factory=list)
    _visits: list[dict[str, Any]] = field(default_factory=list)
    # Keys of intake requests (`note_intake_requests`).
    _intake_keys: set[str] = field(default_factory=set)
    # What the engine decided about messages, in order: (kind, message, reason, event id).
    _decisions: list[tuple[str, ScheduledMessage, str | None, str]] = field(default_factory=list)
    # Patients with a stored journey that does not read back, and why (see `journeys`).
    unreadable: dict[str, str] = field(default_factory=dict)
    # The journeys as read, their state text and their episodes: a journey saved
    # unchanged, and an episode unchanged, is not written again.
    _stored: dict[tuple[str, str, int], tuple[str, dict[str, Episode]]] = field(
        default_factory=dict
    )
    # The batch's patients (those whose journeys were read), and their stored
    # consents' times, read at the first `consent_times`.
    _batch_patients: set[str] = field(default_factory=set)
    _consent_times: dict[str, dict[tuple[str, str], datetime]] | None = None

    # -- reads ----------------------------------------------------------------

    def processed(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these events were already processed."""
        ids = list(set(event_ids))
        found: set[str] = set()
        for chunk in chunks(ids, 500):
            rows = self.connection.execute(_PROCESSED, {"ids": chunk})
            found.update(row[0] for row in rows)
        return found

    def lock_patients(self, patient_ids: Iterable[str]) -> None:
        """Hold these patients' journeys for this transaction (PostgreSQL).

        Two processes that advance the same patient at once would each read the
        old journey and one would lose the other's update. Transaction-scoped
        advisory locks, taken in a fixed order, serialise them; SQLite allows
        one writer at a time and needs nothing more than the caller's lock.
        """
        if self.connection.dialect.name != "postgresql":
            return
        ids = sorted(set(patient_ids))
        if ids:
            # One round trip for the batch; ordered by the lock key itself, so two
            # batches whose ids share a key still take their locks in one order.
            self.connection.execute(_LOCK_PATIENTS, {"ids": ids})

    def journeys(self, patient_ids: Iterable[str]) -> dict[tuple[str, str, int], Journey]:
        """Every journey of these patients, by (patient, flow, version).

        A journey that does not read back is left out and its patient noted in
        `unreadable`, with why: advancing the patient without it would lose
        their history, so the caller holds that patient's events back.
        """
        found: dict[tuple[str, str, int], Journey] = {}
        ids = set(patient_ids)
        self._batch_patients |= ids
        for chunk in chunks(list(ids), 500):
            rows = self.connection.execute(_JOURNEYS, {"ids": chunk})
            for patient_id, flow_id, version, state in rows:
                try:
                    journey = codec.loads(Journey, state)
                except (ValidationError, ValueError, RecursionError) as exc:
                    self.unreadable.setdefault(
                        patient_id, f"journey {flow_id} v{version}: {exc.__class__.__name__}"
                    )
                    continue
                key = (patient_id, flow_id, version)
                found[key] = journey
                self._stored[key] = (state, {e.id: e for e in journey.episodes})
        return found

    def known_patients(self, patient_ids: Iterable[str]) -> dict[str, KnownPatient]:
        """What is known of each stored patient, with the stamp behind each field.

        A record that does not read back is left out and its patient noted in
        `unreadable`, as for a journey: merging into an empty patient would
        erase what the store knows.
        """
        found: dict[str, KnownPatient] = {}
        for chunk in chunks(list(set(patient_ids)), 500):
            rows = self.connection.execute(_KNOWN_PATIENTS, {"ids": chunk})
            for patient_id, snapshot, at, stamps in rows:
                try:
                    found[patient_id] = _known_patient(codec.loads(Patient, snapshot), at, stamps)
                except (ValidationError, ValueError, RecursionError) as exc:
                    self.unreadable.setdefault(patient_id, f"record: {exc.__class__.__name__}")
        return found

    def event_times(self, patient_ids: Iterable[str]) -> list[tuple[str, str, str, datetime]]:
        found: list[tuple[str, str, str, datetime]] = []
        for chunk in chunks(sorted(set(patient_ids)), 500):
            rows = self.connection.execute(_EVENT_TIMES, {"ids": chunk})
            found += [(event_id, patient, kind, at) for event_id, patient, kind, at in rows]
        return found

    def consent_times(self, patient_id: str) -> dict[tuple[str, str], datetime]:
        """When each stored consent of the patient was decided, by (recipient, channel).

        Read for every patient of the batch at the first call (one statement,
        not one per consent event); what this unit saves is not among them.
        """
        if self._consent_times is None:
            self._consent_times = {}
            for chunk in chunks(sorted(self._batch_patients), 500):
                rows = self.connection.execute(_CONSENT_TIMES, {"ids": chunk})
                for pid, recipient, channel, at in rows:
                    self._consent_times.setdefault(pid, {})[(recipient, channel)] = at
        if patient_id not in self._batch_patients:
            rows = self.connection.execute(_CONSENT_TIMES, {"ids": [patient_id]})
            return {(r, c): at for _, r, c, at in rows}
        return dict(self._consent_times.get(patient_id, {}))

    # -- writes (collected) ---------------------------------------------------

    def save_patient(self, known: KnownPatient) -> None:
        """Keep what is now known of a patient (merged by `merge_patient`, not here)."""
        # Kept as values and serialised at flush: a batch may save one patient many times.
        self._patients[known.patient.id] = known

    def save_consent(self, patient_id: str, recipient: str, record: ConsentRecord) -> None:
        key = (patient_id, recipient, record.channel.value)
        earlier = self._consents.get(key)
        if earlier is not None and earlier["at"] > record.at:
            return  # the batch already holds a later decision
        self._consents[key] = {
            "patient_id": patient_id,
            "recipient": recipient,
            "channel": record.channel.value,
            "granted": record.granted,
            "at": record.at,
            "source": record.source,
        }

    def save_journey(self, journey: Journey, version: int) -> None:
        # The latest state wins; rows are built once, at flush.
        self._journeys[(journey.patient_id, journey.flow_id, version)] = journey

    def save_settled(
        self, patient_id: str, flow_id: str, version: int, episodes: Sequence[Episode]
    ) -> None:
        self._settled += [
            {**_episode_row(patient_id, flow_id, version, e, self.now), "settled": codec.dumps(e)}
            for e in episodes
        ]

    def save_visits(self, episode_ids: Sequence[str], visits: Sequence[VisitFacts]) -> None:
        self._visited += episode_ids
        self._visits += [visit_row(v) for v in visits]

    def note_intake_requests(self, keys: Iterable[str]) -> None:
        self._intake_keys.update(keys)

    def mark_processed(self, event: Event) -> None:
        self._processed.append(
            {
                "event_id": event.id,
                "type": event.type.value,
                "source": event.source,
                "patient_id": event.patient.id,
                "occurred_at": event.occurred_at,
                "received_at": self.now,
                "body": codec.dumps_event(event),
            }
        )

    def schedule(self, message: ScheduledMessage, event_id: str) -> None:
        """Schedule a message, or update a pending one (a message already final stays)."""
        self._decisions.append(("schedule", message, None, event_id))

    def cancel(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Cancel a scheduled or claimed message; one being sent or final is left alone.

        A claimed message is cancelled too: its claimer re-checks the status when
        it marks the message "sending", so a cancelled claim is never sent.
        """
        self._decisions.append(("cancel", message, reason, event_id))

    def expire(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Record a message that was pointless when it was decided."""
        self._decisions.append(("expire", message, reason, event_id))

    # -- flush ------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything collected (called once, before the commit)."""
        c = self.connection
        patients = [
            {
                "id": known.patient.id,
                "snapshot": codec.dumps(known.patient),
                "snapshot_at": known.seen_at,
                "field_stamps": codec.dumps_stamps(known.stamps),
            }
            for known in self._patients.values()
        ]
        upsert(c, PatientRow.__table__, patients, ["id"])
        upsert(
            c,
            ConsentRow.__table__,
            list(self._consents.values()),
            ["patient_id", "recipient", "channel"],
        )
        journeys, episodes = self._journey_rows()
        upsert(c, JourneyRow.__table__, journeys, ["patient_id", "flow_id", "flow_version"])
        upsert(c, EpisodeRow.__table__, episodes, ["id"])
        upsert(c, EpisodeRow.__table__, self._settled, ["id"])
        insert_rows(c, ProcessedEventRow.__table__, self._processed)
        for chunk in chunks(sorted(set(self._visited)), 500):
            c.execute(_DELETE_VISITS, {"ids": chunk})
        insert_rows(c, StageVisitRow.__table__, self._visits)
        self._write_messages()

    def _journey_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of the journeys saved, and of their episodes, that differ from the stored."""
        journeys, episodes = [], []
        for key, journey in self._journeys.items():
            patient_id, flow_id, version = key
            state = codec.dumps(journey)
            stored, stored_episodes = self._stored.get(key, (None, {}))
            if state == stored:
                continue
            journeys.append(
                {
                    "patient_id": patient_id,
                    "flow_id": flow_id,
                    "flow_version": version,
                    "state": state,
                    "active": any(e.status is EpisodeStatus.ACTIVE for e in journey.episodes),
                    "updated_at": self.now,
                }
            )
            episodes += [
                _episode_row(patient_id, flow_id, version, episode, self.now)
                for episode in journey.episodes
                if stored_episodes.get(episode.id) != episode
            ]
        return journeys, episodes

    def _write_messages(self) -> None:
        """Apply the message decisions against what the store holds, and audit what took.

        Each key's status is followed through the batch, starting from the
        database, and moved only as `message_status.allowed` says: a schedule
        inserts a new row (or updates a pending one, which is no move), a
        cancel moves a pending row to cancelled, an expiry records a new row
        as expired. Decisions about rows that are already final change nothing
        and are not audited, so the audit never says "cancelled" of a message
        that was sent.
        """
        c = self.connection
        # Read and locked in key order: the dispatcher locks its batch's rows in
        # the same order, so the two never wait for each other in a cycle.
        keys = sorted({m.key for _, m, _, _ in self._decisions})
        status: dict[str, MessageStatus] = {}
        statuses = _LOCKED_STATUSES if c.dialect.name == "postgresql" else _STATUSES
        for chunk in chunks(keys, 500):
            rows = c.execute(statuses, {"keys": chunk})
            status.update({k: MessageStatus(v) for k, v in rows})
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, ScheduledMessage] = {}
        cancels: dict[str, str] = {}
        audit: list[DecisionRecord] = []
        for kind, message, reason, event_id in self._decisions:
            key, current = message.key, status.get(message.key)
            # The status this decision gave the message, if any.
            taken: MessageStatus | None = None
            # The engine moves only what is new (scheduled or expired as decided)
            # or pending (cancelled); the dispatcher moves the rest.
            if kind == "schedule" and current is None:
                inserts[key] = message_row(message, MessageStatus.SCHEDULED, None, self.now)
                taken = MessageStatus.SCHEDULED
            elif kind == "schedule" and current in PENDING:
                # An update (its expiry moved): the due time, and any deferral, stay.
                if key in inserts:
                    inserts[key] = message_row(message, MessageStatus.SCHEDULED, None, self.now)
                else:
                    updates[key] = message
            elif kind == "cancel" and allowed(current, MessageStatus.CANCELLED):
                assert reason is not None
                if key in inserts:
                    inserts[key] |= {"status": MessageStatus.CANCELLED, "reason": reason}
                else:
                    cancels[key] = reason
                taken = MessageStatus.CANCELLED
            elif kind == "expire" and current is None:
                inserts[key] = message_row(message, MessageStatus.EXPIRED, reason, self.now)
                taken = MessageStatus.EXPIRED
            if taken is not None:
                status[key] = taken
                audit.append(record(message, self.now, taken, reason, event_id=event_id))
        insert_rows(c, ScheduledMessageRow.__table__, list(inserts.values()))
        if updates:
            c.execute(
                _UPDATE_PENDING,
                [
                    {
                        "u_key": key,
                        "u_payload": codec.dumps(message),
                        "u_expires_at": message.expires_at,
                        "u_episode_id": message.episode_id,
                        "u_now": self.now,
                    }
                    for key, message in updates.items()
                ],
            )
        # The dispatcher may have claimed a row meanwhile: only the rows a
        # statement moved are cancelled, and only they are audited as such.
        # One statement per key, on the primary key: a batch of keys with a
        # status filter lets a planner without statistics walk the status index
        # over every pending row instead.
        cancelled = {
            key
            for key, reason in cancels.items()
            if c.execute(
                _CANCEL_PENDING, {"c_key": key, "c_reason": reason, "c_now": self.now}
            ).rowcount
            == 1
        }
        audit = [
            a
            for a in audit
            if not (
                a.status == MessageStatus.CANCELLED and a.key in cancels and a.key not in cancelled
            )
        ]
        insert_rows(c, AuditRow.__table__, [audit_row(a) for a in audit])
        # Where an intake was asked for, as the figures count it: an intake request
        # audited as scheduled there (kept, as the audit is, once written).
        asked = {
            (a.episode, a.stage, a.flow)
            for a in audit
            if a.status == MessageStatus.SCHEDULED and a.key in self._intake_keys
        }
        if asked:
            requests = [{"episode_id": e, "stage_id": s, "flow_id": f} for e, s, f in sorted(asked)]
            upsert(c, IntakeRequestRow.__table__, requests, ["episode_id", "stage_id"])
        if self.hold is not None:
            self._hold([*inserts, *updates])

    def _hold(self, keys: list[str]) -> None:
        """Hold what this unit scheduled or updated until its import closes.

        Nothing due before the hold ends is claimable before then: a later
        line of the same import may still cancel or move it.
        """
        assert self.hold is not None
        hold = {"h_import": self.hold.import_id, "h_until": self.hold.until, "h_now": self.now}
        for chunk in chunks(sorted(keys), 500):
            self.connection.execute(_HOLD_FOR_IMPORT, hold | {"h_keys": chunk})


# Built once: every batch of events runs them, and building a statement costs
# more than running it for a batch of one.
_PROCESSED = select(ProcessedEventRow.event_id).where(among(ProcessedEventRow.event_id, "ids"))
_JOURNEYS = select(
    JourneyRow.patient_id, JourneyRow.flow_id, JourneyRow.flow_version, JourneyRow.state
).where(among(JourneyRow.patient_id, "ids"))
_KNOWN_PATIENTS = select(
    PatientRow.id, PatientRow.snapshot, PatientRow.snapshot_at, PatientRow.field_stamps
).where(among(PatientRow.id, "ids"))
_STATUSES = select(ScheduledMessageRow.key, ScheduledMessageRow.status).where(
    among(ScheduledMessageRow.key, "keys")
)
_LOCKED_STATUSES = locking_in_key_order(_STATUSES, ScheduledMessageRow.key, "postgresql")
_EVENT_TIMES = select(
    ProcessedEventRow.event_id,
    ProcessedEventRow.patient_id,
    ProcessedEventRow.type,
    ProcessedEventRow.occurred_at,
).where(among(ProcessedEventRow.patient_id, "ids"))
_DELETE_VISITS = delete(StageVisitRow).where(among(StageVisitRow.episode_id, "ids"))
_CONSENT_TIMES = select(
    ConsentRow.patient_id, ConsentRow.recipient, ConsentRow.channel, ConsentRow.at
).where(among(ConsentRow.patient_id, "ids"))
_MESSAGES = cast(Table, ScheduledMessageRow.__table__)
_UPDATE_PENDING = (
    update(_MESSAGES)
    # `or_`, not `in_`: an IN list is an expanding parameter, which executemany refuses.
    .where(
        _MESSAGES.c.key == bindparam("u_key"),
        or_(*(_MESSAGES.c.status == status for status in sorted(PENDING))),
    )
    .values(
        payload=bindparam("u_payload"),
        expires_at=bindparam("u_expires_at"),
        episode_id=bindparam("u_episode_id"),
        updated_at=bindparam("u_now"),
    )
)
_HOLD_FOR_IMPORT = (
    update(_MESSAGES)
    .where(
        among(_MESSAGES.c.key, "h_keys"),
        _MESSAGES.c.status == MessageStatus.SCHEDULED,
    )
    .values(
        import_id=bindparam("h_import"),
        due_at=case(
            (_MESSAGES.c.due_at < bindparam("h_until"), bindparam("h_until")),
            else_=_MESSAGES.c.due_at,
        ),
        # Moved, a pacing hold's place is gone: it comes back as a new send.
        reason=case(
            (
                and_(_MESSAGES.c.due_at < bindparam("h_until"), _MESSAGES.c.reason == PACED),
                None,
            ),
            else_=_MESSAGES.c.reason,
        ),
        updated_at=bindparam("h_now"),
    )
)
_CANCEL_PENDING = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.key == bindparam("c_key"),
        _MESSAGES.c.status.in_(sources(MessageStatus.CANCELLED)),
    )
    .values(
        status=MessageStatus.CANCELLED,
        reason=bindparam("c_reason"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("c_now"),
    )
)
_LOCK_PATIENTS = text(
    "SELECT pg_advisory_xact_lock(k) FROM ("
    " SELECT DISTINCT hashtextextended(id, 0) AS k FROM unnest(CAST(:ids AS text[])) AS id"
    " ORDER BY k) AS keys"
)


def _known_patient(patient: Patient, at: datetime, stamps: str | None) -> KnownPatient:
    if stamps is not None:
        return KnownPatient(patient, at, codec.loads_stamps(stamps))
    # A row from before field stamps: its values were stated at `at`; its
    # empty fields may be what an old partial update erased, so any fact fills them.
    legacy = Stamp(at, "")
    return KnownPatient(patient, at, dict.fromkeys(patient.stated(), legacy))


def _episode_row(
    patient_id: str, flow_id: str, version: int, episode: Episode, now: datetime
) -> dict[str, Any]:
    return {
        "id": episode.id,
        "patient_id": patient_id,
        "flow_id": flow_id,
        "flow_version": version,
        "stage_id": episode.stage_id,
        "status": episode.status.value,
        "outcome": episode.outcome,
        "started_at": episode.started_at,
        "ended_at": episode.ended_at,
        "appointment_id": episode.appointment_id,
        "updated_at": now,
    }
