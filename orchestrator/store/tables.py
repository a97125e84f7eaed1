"""The store's tables (SQLAlchemy 2). Row classes never leave `orchestrator.store`.

Times are stored timezone-aware (UTC). Columns that only the store reads
back (journey state, scheduled-message payloads, patient snapshots) hold JSON
text written by `codec`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..event import MAX_ID_LENGTH, MAX_SOURCE_LENGTH
from ..limits import storable_text

__all__ = [
    "AuditRow",
    "Base",
    "ConsentRow",
    "DeliveryAttemptRow",
    "EpisodeRow",
    "FlowDraftRow",
    "FlowVersionRow",
    "ImportRow",
    "InboundMessageRow",
    "IntakeRequestRow",
    "JourneyRow",
    "MessageTallyRow",
    "OutboxRow",
    "PatientRow",
    "ProcessedEventRow",
    "Reason",
    "ReasonText",
    "RejectedInputRow",
    "ScheduledMessageRow",
    "SendBucketRow",
    "SentStageRow",
    "StageVisitRow",
    "Stamp",
    "TestSendRow",
    "WebhookReceiptRow",
]

Id = String(MAX_ID_LENGTH)


class Reason(TypeDecorator[str]):
    """Text that says why (a reason, an error): always storable, on every backend.

    Reasons quote what they refuse, and what a hostile input holds (a NUL, a
    lone surrogate, a kilobyte of it) must not make the record of its refusal
    fail: PostgreSQL's text takes neither NUL nor surrogates, and a varchar
    refuses what is too long. So each is replaced by U+FFFD and the text is
    cut to the column's length, here, once for every column that holds one.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        kept = storable_text(value)
        return kept[: self.length] if self.length else kept


class ReasonText(Reason):
    """A `Reason` of any length (a TEXT column)."""

    impl = Text  # TEXT, as the migrations made it
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(None)


class Stamp(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL keeps the offset (timestamptz); SQLite keeps text, so the
    value is stored as naive UTC and read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; expected an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the text is written and read here in one step, in the format
    # SQLAlchemy's DATETIME uses ("2026-03-02 14:00:00.000000"), instead of two
    # stacked converters: every event writes dozens of these.

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], object] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; expected an aware one")
            return _utc_text(value)

        return to_text

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[object], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: object) -> datetime | None:
            if value is None:
                return None
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return parsed.replace(tzinfo=UTC)

        return from_text


# A batch writes the same few instants (now, due times) over and over; equal
# aware datetimes are the same instant, whatever their zone, so one text each.
@lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# An autoincrementing id that is BIGINT on PostgreSQL and the rowid on SQLite.
Serial = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class PatientRow(Base):
    """What is known of a patient (contact points, language, time zone, caregivers).

    `snapshot_at` is when the newest fact about the patient occurred;
    `field_stamps` holds, per field, the stamp of the fact that set it (NULL
    on rows written before partial updates were merged).
    """

    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    snapshot: Mapped[str] = mapped_column(Text)
    snapshot_at: Mapped[datetime] = mapped_column(Stamp())
    field_stamps: Mapped[str | None] = mapped_column(Text, nullable=True)


class ConsentRow(Base):
    """Consent per recipient and channel: the latest decision, its source and time."""

    __tablename__ = "consents"
    patient_id: Mapped[str] = mapped_column(Id, primary_key=True)
    recipient: Mapped[str] = mapped_column(String(220), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(Stamp())
    source: Mapped[str] = mapped_column(String(100))


class JourneyRow(Base):
    """A patient's journey through one version of one flow (the engine's state)."""

    __tablename__ = "journeys"
    patient_id: Mapped[str] = mapped_column(Id, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    flow_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(Stamp())


class EpisodeRow(Base):
    """Each episode's place in its flow, for timelines and funnels."""

    __tablename__ = "episodes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    patient_id: Mapped[str] = mapped_column(Id, index=True)
    flow_id: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[int] = mapped_column(Integer)
    stage_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(Stamp())
    ended_at: Mapped[datetime | None] = mapped_column(Stamp())
    appointment_id: Mapped[str | None] = mapped_column(Id)
    updated_at: Mapped[datetime] = mapped_column(Stamp())
    # The whole episode (JSON) once it settled out of its journey (`orchestrator.settle`).
    settled: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "flow_id", "stage_id"),)


class StageVisitRow(Base):
    """What the figures keep of each stage visit (`orchestrator.visit_facts`).

    Rewritten for a patient's episodes whenever a batch advances the patient,
    so a flow's funnel and outcomes are a GROUP BY here (`store/figures.py`).
    """

    __tablename__ = "stage_visits"
    episode_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    visit: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(Id)
    flow_id: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[int] = mapped_column(Integer)
    stage_id: Mapped[str] = mapped_column(Text)
    entered_at: Mapped[datetime] = mapped_column(Stamp())
    event_id: Mapped[str] = mapped_column(Id)
    persona: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(Stamp())
    ending: Mapped[str] = mapped_column(String(20))
    next_stage_id: Mapped[str | None] = mapped_column(Text)
    missed: Mapped[bool] = mapped_column(Boolean)
    attended: Mapped[bool] = mapped_column(Boolean)
    intake_sent: Mapped[bool] = mapped_column(Boolean)
    replied: Mapped[bool] = mapped_column(Boolean)
    referral_hours: Mapped[float | None] = mapped_column(Float)
    episode_intake_done: Mapped[bool] = mapped_column(Boolean)
    episode_no_show: Mapped[bool] = mapped_column(Boolean)
    episode_replied: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        # The funnel's pass over a flow's visits reads this index alone.
        Index(
            "ix_stage_visits_funnel",
            "flow_id",
            "persona",
            "flow_version",
            "started_at",
            "stage_id",
            "ending",
            "next_stage_id",
            "missed",
            "attended",
        ),
        # Each episode's first visit: what filters episodes, and the episode's outcomes.
        Index(
            "ix_stage_visits_first",
            "flow_id",
            "episode_id",
            "persona",
            "flow_version",
            "started_at",
            "patient_id",
            "episode_intake_done",
            "episode_no_show",
            "episode_replied",
            postgresql_where=text("visit = 0"),
            sqlite_where=text("visit = 0"),
        ),
        # The few visits with a reply, an intake request, a referral's wait.
        Index(
            "ix_stage_visits_replied",
            "flow_id",
            "episode_id",
            "stage_id",
            postgresql_where=text("replied"),
            sqlite_where=text("replied"),
        ),
        Index(
            "ix_stage_visits_intake_sent",
            "flow_id",
            "episode_id",
            "stage_id",
            postgresql_where=text("intake_sent"),
            sqlite_where=text("intake_sent"),
        ),
        Index(
            "ix_stage_visits_referral",
            "flow_id",
            "stage_id",
            "referral_hours",
            postgresql_where=text("referral_hours IS NOT NULL"),
            sqlite_where=text("referral_hours IS NOT NULL"),
        ),
        Index(None, "patient_id"),
    )


class MessageTallyRow(Base):
    """The audit counted as it is written (a trigger on `audit_log`, migrations 0011, 0015, 0016).

    Per flow, version, persona, message, status, reason, language, channel
    and UTC day: `records` counts audit rows, `keys` the messages that reached
    the status there (first time; a suppressed message under the reason of
    its last suppression). Empty text stands for none, so it can be a key.
    """

    __tablename__ = "message_tallies"
    flow_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    flow_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    persona: Mapped[str] = mapped_column(Text, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    stage_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True)
    language: Mapped[str] = mapped_column(String(20), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    records: Mapped[int] = mapped_column(Integer)
    keys: Mapped[int] = mapped_column(Integer)


class SentStageRow(Base):
    """Each (episode, stage) where a message was sent (the same trigger): replies per send."""

    __tablename__ = "sent_stages"
    episode_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    stage_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(100))

    __table_args__ = (Index("ix_sent_stages_flow", "flow_id", "stage_id", "episode_id"),)


class IntakeRequestRow(Base):
    """Each (episode, stage) where an intake request was scheduled (the unit of work).

    The processor names which messages ask for an intake (`note_intake_requests`);
    with the visits' intake.sent events, the figures' "intake asked".
    """

    __tablename__ = "intake_requests"
    episode_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    stage_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(100))

    __table_args__ = (Index("ix_intake_requests_flow", "flow_id", "stage_id", "episode_id"),)


class ProcessedEventRow(Base):
    """The idempotency record: an event id is processed once."""

    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(Id, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(MAX_SOURCE_LENGTH))
    # Journey insight reads a flow's patients' events by patient.
    patient_id: Mapped[str] = mapped_column(Id, index=True)
    occurred_at: Mapped[datetime] = mapped_column(Stamp())
    received_at: Mapped[datetime] = mapped_column(Stamp())
    # The canonical event (`codec.dumps_event`), for replaying history (what-if);
    # NULL for events processed before migration 0009.
    body: Mapped[str | None] = mapped_column(Text)

    # History reads a window of occurrence times, in (time, id) order.
    __table_args__ = (Index(None, "occurred_at", "event_id"),)


class ScheduledMessageRow(Base):
    """One scheduled message; `key` is its idempotency key.

    `due_at` is when it is next looked at: the engine's due time, moved by
    quiet-hours deferrals and retry backoff. Claimers hold a lease.
    """

    __tablename__ = "scheduled_messages"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    patient_id: Mapped[str] = mapped_column(Id)
    recipient: Mapped[str] = mapped_column(String(220))
    flow_id: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[int] = mapped_column(Integer)
    episode_id: Mapped[str] = mapped_column(String(40))
    stage_id: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Reason(200))
    due_at: Mapped[datetime] = mapped_column(Stamp())
    expires_at: Mapped[datetime | None] = mapped_column(Stamp())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str | None] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(String(100))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(Stamp())
    sent_at: Mapped[datetime | None] = mapped_column(Stamp())
    created_at: Mapped[datetime] = mapped_column(Stamp())
    updated_at: Mapped[datetime] = mapped_column(Stamp())
    # The open import whose events scheduled it: `due_at` is held at the
    # import's hold until the import closes (see `store/imports.py`).
    import_id: Mapped[str | None] = mapped_column(String(40), index=True)

    __table_args__ = (
        # Finding due work reads this index: its cost follows what is due, not what is pending,
        # and the key keeps the claim's order (due time, then key) without a sort of the
        # messages due at one instant (migration 0013).
        Index(None, "status", "due_at", "key"),
        # Frequency caps count recent sends per recipient and channel.
        Index(None, "patient_id", "recipient", "channel", "sent_at"),
        Index(None, "episode_id"),
    )


class ImportRow(Base):
    """An import of history (`ingest --history`): its messages wait until it closes.

    `hold_until` is renewed by each batch; an import whose client died stops
    holding anything when it passes.
    """

    __tablename__ = "imports"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(Stamp())
    hold_until: Mapped[datetime] = mapped_column(Stamp())
    closed_at: Mapped[datetime | None] = mapped_column(Stamp())


class DeliveryAttemptRow(Base):
    """Each hand-over to a connector, with its outcome."""

    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(Stamp())
    finished_at: Mapped[datetime | None] = mapped_column(Stamp())
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Reason(300))
    provider_id: Mapped[str | None] = mapped_column(String(100))


class AuditRow(Base):
    """The append-only audit log: every decision and outcome, with its reason."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Stamp())
    event_id: Mapped[str | None] = mapped_column(Id)
    patient_id: Mapped[str] = mapped_column(Id, index=True)
    flow_id: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[int] = mapped_column(Integer)
    episode_id: Mapped[str] = mapped_column(String(40))
    stage_id: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(40), index=True)
    recipient: Mapped[str] = mapped_column(String(220))
    channel: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(20))
    template: Mapped[str] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(Stamp())
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Reason(200))

    __table_args__ = (
        Index(None, "flow_id", "at"),
        # Intake requests and holdout groups read a few messages' rows from it alone.
        Index(
            "ix_audit_log_flow_messages",
            "flow_id",
            "message_id",
            "status",
            "episode_id",
            "stage_id",
            "recipient",
            "reason",
        ),
    )


class RejectedInputRow(Base):
    """Input that could not be accepted, kept with its reason."""

    __tablename__ = "rejected_inputs"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(Stamp())
    source: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(ReasonText())
    body: Mapped[bytes] = mapped_column(LargeBinary)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class InboundMessageRow(Base):
    """A raw inbound message (HL7 v2, FHIR), kept before it is parsed.

    `status` is `received` until the message's events are committed (or it is
    rejected); a row left `received` by a crash is there to be replayed.
    """

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(Stamp())
    # `hl7v2`, `fhir`, or `deferred:<source>` (what a send thread learned: `IntakeQueue`).
    protocol: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), index=True)
    event_id: Mapped[str | None] = mapped_column(Id, nullable=True)
    reason: Mapped[str | None] = mapped_column(ReasonText(), nullable=True)


class OutboxRow(Base):
    """What the sandbox connectors "sent". Not unique by key: duplicates would show."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(40), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(Stamp())


class SendBucketRow(Base):
    """A sender's token bucket on one channel, shared by every dispatcher (migration 0014).

    `queued_until`: the instant by which the refill pays for every send held so far.
    """

    __tablename__ = "send_buckets"
    sender: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(Stamp())
    queued_until: Mapped[datetime | None] = mapped_column(Stamp(), nullable=True)


class TestSendRow(Base):
    """A test send of a previewed message: no patient's, so never in figures, audit or caps."""

    __tablename__ = "test_sends"
    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(40))
    flow_id: Mapped[str] = mapped_column(String(100), index=True)
    flow_version: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(100))
    persona: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    provider_id: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[datetime] = mapped_column(Stamp())
    requested_by: Mapped[str | None] = mapped_column(String(100))


class FlowVersionRow(Base):
    """Every flow version the service has run, so episodes can finish on theirs.

    A version published in the console also keeps the YAML as written
    (`text`), its templates (`templates`, JSON name -> text, read before the
    files), who published it and the diff against the version it replaced.
    """

    __tablename__ = "flow_versions"
    flow_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(Stamp())
    published_by: Mapped[str] = mapped_column(String(100), server_default="file")
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    templates: Mapped[str | None] = mapped_column(Text, nullable=True)
    diff: Mapped[str | None] = mapped_column(Text, nullable=True)


class FlowDraftRow(Base):
    """The draft of a flow being edited in the console: one per flow, until published."""

    __tablename__ = "flow_drafts"
    flow_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    # JSON name -> text: the templates edited in this draft.
    templates: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(Stamp())


class WebhookReceiptRow(Base):
    """Provider webhook events already applied (SendGrid `sg_event_id`): duplicates are dropped."""

    __tablename__ = "webhook_receipts"
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(Stamp())
