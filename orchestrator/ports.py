"""The ports: what the runtime and the connectors call, as protocols of plain types.

This is a leaf (httpx's `_transports/base.py`): it imports the standard
library and the core's values, nothing else. The runtime type-hints against
these protocols; stores (`orchestrator.store.SqlStore`,
`orchestrator.memory_store.MemoryStore`) and connectors (`connectors/`)
implement them without importing the code that uses them. Each protocol
holds what its caller calls today, not everything an implementation offers:

- `JourneyUnit` and `JourneyStore`: one batch of events, read and written
  in one transaction (`EventProcessor`);
- `MessageLedger`: claims, sends, finishes and reconciling of due messages
  (`Dispatcher`);
- `DeliveryReports` and `Recipients`: provider feedback on sent messages
  (webhooks, `Feedback`);
- `RejectedInputs`: input kept with why it was refused (by the intake, a
  batch's refusals in one transaction);
- `Outbox`: the sandbox connector's record of what it sent;
- `RecordedTestSends`: test sends of previewed messages, kept apart (`preview`);
- `SendBuckets`: each sender's token bucket, shared by every dispatcher on
  the store (`runtime.pacing.Pacer`);
- `FlowVersions`: the flow versions a store has run (`FlowRegistry`);
- `EventHistory`: the processed events, in the order they occurred, for a
  what-if replay (`orchestrator.whatif`);
- `InboundArchive`: raw EHR messages kept before they are parsed
  (`connectors.hl7_intake`), and what a send thread defers (`IntakeQueue`);
- `EventIntake`, with `Input`: where every transport hands what it received
  (`orchestrator.runtime.intake.Intake`), and `EventSink`, the processor
  behind it;
- `Connector`, with `Outgoing` and `Receipt`: hands a message to a provider.

The read models the stores' queries return (`MessageView`, `EpisodeView`,
`RejectedInput`) are values here too: both stores build them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from .event import Channel, Event, EventType, Patient
from .journey import Episode, Journey, ScheduledMessage
from .message_status import MessageStatus
from .patient_merge import KnownPatient
from .policies import Ask, ConsentRecord, Pace, Taken
from .visit_facts import VisitFacts

__all__ = [
    "REJECTED_BODY_LIMIT",
    "Addressee",
    "ArchivedMessage",
    "Claim",
    "Connector",
    "DeliveryReports",
    "EpisodeView",
    "EventHistory",
    "EventIntake",
    "EventResult",
    "EventSink",
    "EventStore",
    "Final",
    "FlowVersions",
    "ImportHold",
    "InboundArchive",
    "Input",
    "JourneyStore",
    "JourneyUnit",
    "MessageLedger",
    "MessageView",
    "Outbox",
    "OutboxEntry",
    "Outgoing",
    "Receipt",
    "Recipients",
    "RecordedTestSend",
    "RecordedTestSends",
    "RejectedInput",
    "RejectedInputs",
    "SendBuckets",
    "SendingFacts",
    "Sent",
    "Settlement",
]

# The largest body kept for a rejected input; larger ones are cut, and say so.
REJECTED_BODY_LIMIT = 64 * 1024


# -- values ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportHold:
    """An open import the unit's events belong to, and until when it holds their messages."""

    import_id: str
    until: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A due message a dispatcher holds under lease."""

    message: ScheduledMessage
    status: MessageStatus
    attempts: int
    due_at: datetime
    channel: str | None
    # The row's reason as claimed: `paced` when the message comes back at the
    # instant its sender's tokens were reserved for it.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SendingFacts:
    """What the dispatcher reads about the recipients of a batch of due messages.

    `sent` is per recipient and channel; the dispatcher adds to it as it sends,
    so that a frequency cap holds across one batch too.
    """

    patients: dict[str, Patient]
    consent: dict[tuple[str, str], dict[Channel, ConsentRecord]]
    sent: dict[tuple[str, str], dict[Channel, list[datetime]]]
    journeys: dict[tuple[str, str, int], Journey]
    # Stored patients and journeys that could not be read back, with why
    # (`decode:<error>`): their messages fail alone instead of the batch.
    unreadable_patients: dict[str, str] = field(default_factory=dict)
    unreadable_journeys: dict[tuple[str, str, int], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Final:
    """A held message the send-time gate settled without a send (expired, suppressed)."""

    message: ScheduledMessage
    status: MessageStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Sent:
    """A send a connector accepted, as the dispatcher records it."""

    message: ScheduledMessage
    at: datetime
    channel: Channel
    provider_id: str
    language: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    key: str
    channel: str
    to: str
    subject: str | None
    body: str
    html: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class RecordedTestSend:
    """A test send as it is recorded: apart from patients' messages, never counted."""

    key: str
    flow_id: str
    flow_version: int
    message_id: str
    persona: str | None
    language: str
    channel: Channel
    to: str
    subject: str | None
    body: str
    provider_id: str
    sent_at: datetime
    requested_by: str | None = None
    id: int | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["channel"] = self.channel.value
        data["sent_at"] = self.sent_at.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class Addressee:
    """Who a message or a phone number belongs to: a patient, and the patient or a caregiver."""

    patient: Patient
    recipient: str

    @property
    def caregiver_id(self) -> str | None:
        kind, _, rest = self.recipient.partition(":")
        return rest if kind == "caregiver" else None

    @classmethod
    def holding(cls, patient: Patient, phone: str) -> list[Addressee]:
        """The patient and each caregiver of theirs whose phone is `phone`."""
        found = [cls(patient, "patient")] if patient.phone == phone else []
        return found + [
            cls(patient, f"caregiver:{c.id}") for c in patient.caregivers if c.phone == phone
        ]


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """An archived inbound message not settled yet: what is left to take."""

    id: int
    protocol: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Settlement:
    """What became of one archived inbound message."""

    id: int
    status: str
    event_id: str | None = None
    reason: str | None = None


# "queued": kept (committed) to be taken later, by an intake that defers (`IntakeQueue`).
Outcome = Literal["accepted", "duplicate", "rejected", "queued"]


@dataclass(frozen=True, slots=True)
class EventResult:
    """What became of one event handed to the processor, or one input handed to the intake.

    `id` is None only for an input refused before it had a usable event id.
    """

    id: str | None
    status: Outcome
    errors: tuple[str, ...] = ()
    # What an accepted event's sender should know (taken beyond the horizon).
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        result: dict[str, object] = {"id": self.id, "status": self.status}
        if self.errors:
            result["errors"] = list(self.errors)
        if self.notes:
            result["notes"] = list(self.notes)
        return result


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message for one address, keyed for idempotency.

    `valid_until` is the message's staleness limit: a connector must not hand
    it over from then on (raise `MessageStaleError`), and one whose provider
    queues messages passes the time left on, so the provider does not deliver
    it late either.
    """

    key: str
    channel: Channel
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    provider_id: str


# -- read models: what the API, dashboard and CLI read ---------------------------


@dataclass(frozen=True, slots=True)
class MessageView:
    """A scheduled message as a patient's timeline shows it (field order is the JSON's)."""

    key: str
    flow: str
    flow_version: int
    episode: str
    stage: str
    message: str
    recipient: str
    status: str
    reason: str | None
    due_at: datetime
    channel: str | None
    attempts: int
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class EpisodeView:
    """An episode's place in its flow, as a patient's timeline shows it."""

    id: str
    flow: str
    flow_version: int
    stage: str | None
    status: str
    outcome: str | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class RejectedInput:
    """Input that could not be accepted, kept with why."""

    id: int
    received_at: datetime
    source: str
    reason: str
    body: bytes
    truncated: bool


# -- the connector ------------------------------------------------------------------


class Connector(Protocol):
    """Hands messages to a provider (Twilio, SendGrid) or to the sandbox outbox."""

    def send(self, outgoing: Outgoing) -> Receipt:
        """Send, or raise `TransientSendError` / `PermanentSendError`."""
        ...

    def find(self, key: str) -> Receipt | None:
        """The receipt of an earlier send of `key`, or None if there was none.

        Raises:
            TransientSendError: the provider cannot tell right now.
        """
        ...


# -- the store's ports ------------------------------------------------------------


class JourneyUnit(Protocol):
    """What one batch of events reads and writes; the writes commit together or not at all."""

    @property
    def unreadable(self) -> Mapping[str, str]:
        """Patients with a stored journey that does not read back, and why (after `journeys`)."""
        ...

    def lock_patients(self, patient_ids: Iterable[str]) -> None:
        """Hold these patients' journeys against other writers until the unit ends."""
        ...

    def processed(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these events were already processed."""
        ...

    def journeys(self, patient_ids: Iterable[str]) -> dict[tuple[str, str, int], Journey]:
        """Every journey of these patients that reads back, by (patient, flow, version)."""
        ...

    def known_patients(self, patient_ids: Iterable[str]) -> dict[str, KnownPatient]:
        """What is known of each stored patient, with the stamp behind each field."""
        ...

    def consent_times(self, patient_id: str) -> dict[tuple[str, str], datetime]:
        """When each stored consent decision was made, by (recipient, channel)."""
        ...

    def save_patient(self, known: KnownPatient) -> None: ...

    def save_consent(self, patient_id: str, recipient: str, record: ConsentRecord) -> None:
        """Keep a consent decision (within the batch, the later one wins)."""
        ...

    def save_journey(self, journey: Journey, version: int) -> None: ...

    def event_times(self, patient_ids: Iterable[str]) -> list[tuple[str, str, str, datetime]]:
        """These patients' processed events as (id, patient id, type, occurred at).

        Events of this unit are not among them until it commits.
        """
        ...

    def save_visits(self, episode_ids: Sequence[str], visits: Sequence[VisitFacts]) -> None:
        """Replace what the figures keep of these episodes' stage visits (`stage_visits`)."""
        ...

    def note_intake_requests(self, keys: Iterable[str]) -> None:
        """These messages ask for an intake: once scheduled, their episode was asked there."""
        ...

    def save_settled(
        self, patient_id: str, flow_id: str, version: int, episodes: Sequence[Episode]
    ) -> None:
        """Keep episodes settled out of a journey, for figures and the timeline."""
        ...

    def mark_processed(self, event: Event) -> None: ...

    def schedule(self, message: ScheduledMessage, event_id: str) -> None:
        """Schedule a message, or update a pending one (a message already final stays)."""
        ...

    def cancel(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Cancel a pending message; one being sent or final is left alone."""
        ...

    def expire(self, message: ScheduledMessage, reason: str, event_id: str) -> None:
        """Record a message that was pointless when it was decided."""
        ...


class JourneyStore(Protocol):
    def unit(
        self, now: datetime, hold: ImportHold | None = None
    ) -> AbstractContextManager[JourneyUnit]:
        """One transaction for a batch of events, committed when the block ends without error.

        With `hold`, the messages the batch schedules wait for its import to close.
        """
        ...


class RejectedInputs(Protocol):
    def reject(self, body: bytes, source: str, reason: str, now: datetime) -> None:
        """Keep input that could not be accepted, with why (cut at `REJECTED_BODY_LIMIT`)."""
        ...

    def reject_many(self, source: str, refused: Sequence[tuple[bytes, str]], now: datetime) -> None:
        """Keep each (body, reason) of one batch, all in one transaction, or none."""
        ...


class EventStore(JourneyStore, RejectedInputs, Protocol):
    """What the event processor needs of a store."""


class MessageLedger(Protocol):
    """Due messages through their states under a claimer's lease (the dispatcher's store).

    Every write names the claimer (`owner`) and changes nothing once its claim
    is lost (cancelled meanwhile, or taken over after the lease ran out);
    each returns or reports whether it took.
    """

    def holding_connection(self) -> AbstractContextManager[None]:
        """Run this thread's calls on one connection until the block ends (each its own commit)."""
        ...

    def together(self) -> AbstractContextManager[None]:
        """Run this thread's calls in the block as one transaction."""
        ...

    def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[Claim]:
        """Claim up to `limit` messages: first those whose lease ran out, then due ones by due time."""
        ...

    def sending_facts(self, messages: Sequence[ScheduledMessage], since: datetime) -> SendingFacts:
        """The patients, consent, sends since `since` and journeys of these messages."""
        ...

    def lock_messages(self, keys: Iterable[str]) -> None:
        """Lock these messages for the rest of the transaction, in key order."""
        ...

    def begin_sends(
        self,
        channels: Mapping[str, Channel],
        owner: str,
        now: datetime,
        lease_until: datetime | None = None,
    ) -> dict[str, int]:
        """Mark claimed messages "sending"; the attempt number of each still held."""
        ...

    def renew(self, keys: Iterable[str], owner: str, until: datetime) -> set[str]:
        """Extend this claimer's lease on `keys`; the keys it still holds."""
        ...

    def finish(
        self,
        message: ScheduledMessage,
        owner: str,
        now: datetime,
        status: MessageStatus,
        reason: str | None,
        *,
        channel: Channel | None = None,
        language: str | None = None,
        provider_id: str | None = None,
        attempt_outcome: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Move a held message to a final status, with its audit row."""
        ...

    def finish_sent(self, sends: Sequence[Sent], owner: str) -> set[str]:
        """Mark accepted sends "sent", with their audit rows; the keys still held."""
        ...

    def finish_all(self, finals: Sequence[Final], owner: str, now: datetime) -> set[str]:
        """Move held messages to their final statuses, with audit rows; the keys still held."""
        ...

    def unsend(self, key: str, owner: str, now: datetime, outcome: str, error: str | None) -> bool:
        """A send that did not happen: back from "sending" to "claimed", lease kept."""
        ...

    def hold(self, key: str, owner: str, until: datetime, reason: str) -> bool:
        """Keep a message in flight under this claimer's lease until `until` (ask again then)."""
        ...

    def reschedule(
        self,
        message: ScheduledMessage,
        owner: str,
        now: datetime,
        due_at: datetime,
        reason: str,
        *,
        attempt_outcome: str | None = None,
        error: str | None = None,
        audit: bool = True,
    ) -> bool:
        """Put a held message back, due at `due_at` (a deferral, a retry, a pacing hold).

        Without `audit`, no audit row (a message held again for the same reason).
        """
        ...

    def fail_held(self, key: str, owner: str, now: datetime, reason: str) -> bool:
        """Fail a held message from what the store holds of it (its own data is not read)."""
        ...


class Recipients(Protocol):
    """Who a message or a phone number reaches (provider feedback)."""

    def recipient_of(self, key: str) -> Addressee | None: ...

    def recipients_by_phone(self, phone: str) -> list[Addressee]: ...


class DeliveryReports(Recipients, Protocol):
    """Provider feedback on sent messages; a status only moves forward."""

    def settle_sent(self, key: str, provider_id: str | None, now: datetime, reason: str) -> bool:
        """A message whose send outcome was unknown ("sending"): the provider has it."""
        ...

    def advance(
        self,
        status: MessageStatus,
        reason: str | None,
        now: datetime,
        *,
        key: str | None = None,
        provider_id: str | None = None,
    ) -> bool:
        """Move a sent message to delivered or failed; whether it moved."""
        ...

    def engaged(
        self, kind: str, now: datetime, *, key: str | None = None, provider_id: str | None = None
    ) -> bool:
        """An open or a click: audited as delivered with reason `engagement:<kind>`."""
        ...

    def first_receipt(self, source: str, event_ids: Sequence[str], now: datetime) -> set[str]:
        """Record webhook event ids; those not seen before."""
        ...


class Outbox(Protocol):
    """The sandbox's record of what it would have sent."""

    def outbox_add(self, entry: OutboxEntry) -> int:
        """Keep an entry; its id (ids grow)."""
        ...

    def outbox_find(self, key: str, channel: str) -> int | None:
        """The id of the first entry for `key` on `channel`, if any."""
        ...


class RecordedTestSends(Protocol):
    """Where test sends are kept (the stores)."""

    def record_test_send(self, send: RecordedTestSend) -> int:
        """Keep a test send; its id."""
        ...

    def test_sends(self, limit: int = 100) -> list[RecordedTestSend]:
        """The latest test sends, newest first."""
        ...


class SendBuckets(Protocol):
    """Token buckets per (sender, channel), one for every dispatcher on the store."""

    def take_tokens(
        self,
        sender: str,
        channel: Channel,
        pace: Pace,
        sends: Sequence[Ask],
        now: datetime,
    ) -> list[Taken]:
        """Take tokens for `sends`, in order, under the bucket's lock (`pacing.take_all`).

        What each was told: taken (it goes now), held until `ready_at` (it is
        queued for then), or neither (only at or past its deadline: nothing
        taken). Inside `together`, the take commits (or rolls back) with the
        block, holding the bucket's row lock until then: a caller that takes
        from several buckets in one block takes them in (sender, channel)
        order, so that two such blocks never wait on each other.
        """
        ...


class FlowVersions(Protocol):
    def flow_versions(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Every flow version run before: (id, version) -> (digest, source)."""
        ...

    def record_flow_version(
        self, flow_id: str, version: int, source: str, now: datetime
    ) -> None: ...


class EventHistory(Protocol):
    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        flow_event_types: frozenset[EventType] | None = None,
    ) -> Iterator[Event]:
        """The processed events that occurred in [since, until), in the order the engine folds.

        Only the types in `flow_event_types`, when given. Read in chunks, so a
        long window is never held whole. Events processed before bodies were
        kept, and bodies the canonical schema no longer reads, are left out.
        """
        ...


class InboundArchive(Protocol):
    """Raw inbound messages, kept (committed) before they are parsed."""

    def keep(self, protocol: str, bodies: Sequence[bytes], now: datetime) -> list[int]:
        """Keep raw messages as received; their ids, in order."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record what became of archived messages (once each)."""
        ...

    def pending(self, protocol_prefix: str, limit: int) -> list[ArchivedMessage]:
        """The oldest messages still `received` whose protocol starts with the prefix."""
        ...


@dataclass(frozen=True, slots=True)
class Input:
    """One input a transport received: its event, or why it has none.

    `body` is what is kept when the input is rejected (None: the event's
    canonical JSON). A refused input has no event: `reason` is kept with it,
    `problems` go back to the sender, and `id` is the event id it was sent
    with, when that was usable.
    """

    body: bytes | None
    event: Event | None = None
    reason: str = ""
    problems: tuple[str, ...] = ()
    id: str | None = None

    @classmethod
    def refused(
        cls, body: bytes, reason: str, problems: Sequence[str] = (), id: str | None = None
    ) -> Input:
        return cls(body, None, reason, tuple(problems) or (reason,), id)


class EventSink(Protocol):
    """Where parsed events go: the event processor."""

    def process(
        self, events: Sequence[Event], *, hold: ImportHold | None = None
    ) -> Sequence[EventResult]: ...


class EventIntake(Protocol):
    """Where a transport hands its inputs: each refused one kept once, the rest processed."""

    def take(
        self, source: str, inputs: Sequence[Input], *, hold: ImportHold | None = None
    ) -> Sequence[EventResult]:
        """One result per input, in order; `source` names the transport in the rejected inputs.

        An intake that defers the work (`IntakeQueue`) answers `queued` for
        each event it kept to take later.
        """
        ...
