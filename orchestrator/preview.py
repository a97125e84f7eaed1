"""Message preview: a flow's messages rendered as a sample patient would get them, and test sends.

`render_all` renders every message of a flow for every language and channel
(and each persona's variant) through the dispatcher's own `render_context`
and `TemplateSet`, so a preview is exactly what would be sent to a patient
with the sample's details. An SMS comes with its analysis (`sms.analyse`):
segments, encoding, the characters that forced UCS-2 and a GSM-7 form.

`test_send` hands one preview to a connector for the configured test
recipient and records it apart, as a test (`RecordedTestSends`): it is no
scheduled message, so it is never in the figures, the audit or a frequency
cap. Building the connectors is left to the caller (the runtime's, or
`runtime.connectors_for` from settings).

Every result is a frozen dataclass of JSON types (`to_json()`), which the
command line prints and the console renders.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .clock import Clock
from .errors import PreviewError, TemplateError
from .event import Channel
from .flows.model import Flow, MessageSpec, Stage
from .journey import AppointmentState, EncounterState, Episode, Journey, Recipient, ScheduledMessage
from .runtime.rendering import Organisation, render_context
from .sms import SmsAnalysis, analyse
from .templates import TemplateSet

if TYPE_CHECKING:
    # The ports (and the policies they name) only for a test send: a render loads none of them.
    from .ports import Connector, RecordedTestSend, RecordedTestSends

__all__ = [
    "SAMPLE",
    "FlowPreview",
    "MessagePreview",
    "PreviewError",
    "Sample",
    "TestRecipient",
    "render_all",
    "sample_message",
    "test_send",
]


@dataclass(frozen=True, slots=True)
class Sample:
    """The sample patient a preview renders for: reserved numbers, example.org, local times.

    Days and times are the flow's local ones. `key` is the scheduled
    message's key, which links carry a token of; None derives one per message.
    """

    phone: str = "+15555550100"
    email: str = "patient@example.org"
    appointment_on: date = date(2026, 9, 26)  # a Saturday
    appointment_time: time = time(10, 30)
    location: str = "Main Campus, Bldg B"
    service: str = "consultation"
    provider: str = "Dr. Maria Fernanda Rivera"
    admitted_on: date = date(2026, 9, 24)
    discharged_on: date = date(2026, 9, 25)
    caregiver: str | None = None  # a relationship ("daughter") renders for a caregiver
    key: str | None = None


SAMPLE = Sample()


@dataclass(frozen=True, slots=True)
class MessagePreview:
    """One message rendered for one language, channel and persona (None: no persona's variant).

    `sms` is set for SMS; `error` instead of a body when the template fails.
    """

    flow_id: str
    flow_version: int
    stage_id: str
    message_id: str
    template: str
    persona: str | None
    language: str
    channel: Channel
    body: str = ""
    subject: str | None = None
    html: str | None = None
    sms: SmsAnalysis | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["channel"] = self.channel.value
        return data


@dataclass(frozen=True, slots=True)
class FlowPreview:
    """Every preview asked for, of one flow version."""

    flow_id: str
    flow_version: int
    messages: tuple[MessagePreview, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow_id,
            "version": self.flow_version,
            "messages": [m.to_json() for m in self.messages],
        }


def render_all(
    flow: Flow,
    templates: TemplateSet,
    org: Organisation,
    *,
    message: str | None = None,
    language: str | None = None,
    channel: Channel | None = None,
    persona: str | None = None,
    sample: Sample = SAMPLE,
) -> FlowPreview:
    """Render the flow's messages for each language x channel (and persona), as filtered.

    Without `persona`, each message renders as a patient of no persona gets it,
    then once for each persona it has a variant for.

    Raises:
        PreviewError: `message`, `language` or `persona` is not in the flow.
    """
    specs = [(stage, spec) for stage in flow.stages for spec in stage.messages]
    if message is not None:
        specs = [(stage, spec) for stage, spec in specs if spec.id == message]
        if not specs:
            raise PreviewError(f"flow {flow.id}: no message '{message}'")
    if language is not None and language not in flow.languages:
        raise PreviewError(
            f"flow {flow.id}: language '{language}' is not one of {', '.join(flow.languages)}"
        )
    if persona is not None and persona not in {p.id for p in flow.personas}:
        raise PreviewError(f"flow {flow.id}: no persona '{persona}'")
    languages = [language] if language else list(flow.languages)
    found = [
        _render(flow, stage, variant, who, lang, via, templates, org, sample)
        for stage, spec in specs
        for who, variant in _variants(spec, persona)
        for lang in languages
        for via in variant.channels
        if channel is None or via is channel
    ]
    return FlowPreview(flow.id, flow.version, tuple(found))


def _variants(spec: MessageSpec, persona: str | None) -> Iterator[tuple[str | None, MessageSpec]]:
    if persona is not None:
        yield persona, spec.for_persona(persona)
        return
    yield None, spec
    for variant in spec.variants:
        yield variant.persona, spec.for_persona(variant.persona)


def _render(
    flow: Flow,
    stage: Stage,
    spec: MessageSpec,
    persona: str | None,
    language: str,
    channel: Channel,
    templates: TemplateSet,
    org: Organisation,
    sample: Sample,
) -> MessagePreview:
    message, journey = sample_message(flow, stage, spec, sample)
    context = render_context(
        message,
        journey,
        channel=channel,
        language=language,
        timezone=flow.timezone,
        caregiver_relationship=sample.caregiver,
        org=org,
    )
    found = MessagePreview(
        flow.id, flow.version, stage.id, spec.id, spec.template, persona, language, channel
    )
    try:
        rendered = templates.render(channel, language, spec.template, context)
    except TemplateError as exc:
        return replace(found, error=str(exc))
    return replace(
        found,
        body=rendered.body,
        subject=rendered.subject,
        html=rendered.html,
        sms=analyse(rendered.body) if channel is Channel.SMS else None,
    )


def sample_message(
    flow: Flow, stage: Stage, spec: MessageSpec, sample: Sample = SAMPLE
) -> tuple[ScheduledMessage, Journey]:
    """The scheduled message and journey the dispatcher would render `spec` from, for `sample`."""
    zone = ZoneInfo(flow.timezone)
    start = datetime.combine(sample.appointment_on, sample.appointment_time, tzinfo=zone)
    episode = Episode(
        id="ep-preview",
        started_at=start,
        stage_id=stage.id,
        stage_entered_at=start,
        appointments={
            "a-preview": AppointmentState(
                "a-preview",
                start,
                "booked",
                service=sample.service,
                location=sample.location,
                provider=sample.provider,
            )
        },
        encounters={
            "e-preview": EncounterState(
                "e-preview",
                datetime.combine(sample.admitted_on, time(7, 0), tzinfo=zone),
                datetime.combine(sample.discharged_on, time(11, 0), tzinfo=zone),
                service=sample.service,
            )
        },
        appointment_id="a-preview",
        encounter_id="e-preview",
    )
    key = sample.key or hashlib.sha256(f"{flow.id}:{spec.id}".encode()).hexdigest()[:24]
    message = ScheduledMessage(
        key=key,
        flow_id=flow.id,
        flow_version=flow.version,
        episode_id=episode.id,
        stage_id=stage.id,
        message_id=spec.id,
        template=spec.template,
        channels=spec.channels,
        recipient=Recipient("preview", "caregiver" if sample.caregiver else None),
        due_at=start,
        expires_at=None,
        anchor=spec.timing.anchor,
        created_by="preview",
        timezone=flow.timezone,
        appointment_id="a-preview",
        encounter_id="e-preview",
        topic=spec.topic,
        essential=spec.essential,
    )
    return message, Journey("preview", flow.id, episodes=(episode,))


# -- test sends -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestRecipient:
    """Where test sends go (settings `ORCHESTRATOR_TEST_PHONE`, `ORCHESTRATOR_TEST_EMAIL`)."""

    __test__ = False  # not a pytest class

    phone: str | None = None
    email: str | None = None

    def address(self, channel: Channel) -> str:
        """Raises PreviewError when no test recipient is set for `channel`."""
        found = self.phone if channel is Channel.SMS else self.email
        if not found:
            setting = (
                "ORCHESTRATOR_TEST_PHONE" if channel is Channel.SMS else "ORCHESTRATOR_TEST_EMAIL"
            )
            raise PreviewError(f"no test recipient for {channel.value}: set {setting}")
        return found


def test_send(
    preview: MessagePreview,
    *,
    recipient: TestRecipient,
    connectors: Mapping[Channel, Connector],
    record: RecordedTestSends,
    clock: Clock,
    requested_by: str | None = None,
) -> RecordedTestSend:
    """Send one rendered preview to the test recipient of its channel, and record it as a test.

    Raises:
        PreviewError: the preview did not render, or no test recipient or
            connector is set for its channel.
        SendError: the connector refused it (nothing is recorded).
    """
    from .ports import Outgoing, RecordedTestSend

    if preview.error is not None:
        raise PreviewError(f"message {preview.message_id} does not render: {preview.error}")
    to = recipient.address(preview.channel)
    connector = connectors.get(preview.channel)
    if connector is None:
        raise PreviewError(f"no connector for {preview.channel.value}")
    # Its own key: never a patient message's, so nothing reconciles or counts it as one.
    key = f"test-{uuid.uuid4().hex[:24]}"
    receipt = connector.send(
        Outgoing(key, preview.channel, to, preview.body, preview.subject, preview.html)
    )
    sent = RecordedTestSend(
        key=key,
        flow_id=preview.flow_id,
        flow_version=preview.flow_version,
        message_id=preview.message_id,
        persona=preview.persona,
        language=preview.language,
        channel=preview.channel,
        to=to,
        subject=preview.subject,
        body=preview.body,
        provider_id=receipt.provider_id,
        sent_at=clock.now(),
        requested_by=requested_by,
    )
    return replace(sent, id=record.record_test_send(sent))
