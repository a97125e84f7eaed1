"""Message preview: every message x language x channel (and persona variant) for a sample patient."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import orchestrator.preview as preview
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.flows.schema import FlowFile
from orchestrator.memory_store import MemoryStore
from orchestrator.ports import Outgoing, Receipt
from orchestrator.runtime.rendering import Organisation
from orchestrator.templates import TemplateSet
from tests.builders import flow_data, write_templates
from tests.orchestrator.test_persona_variants import variant_flow_data

ROOT = Path(__file__).resolve().parents[2]
ORG = Organisation("Riverside Health", "+1 555 0100", "https://portal.example.org")
FLOW = FlowFile.model_validate(flow_data()).to_core()
PERSONAS = FlowFile.model_validate(variant_flow_data()).to_core()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> TemplateSet:
    root = write_templates(
        tmp_path_factory.mktemp("templates"),
        ("confirmation", "intake_nudge", "reminder", "reminder_caregiver", "survey", "rebooking"),
    )
    (root / "sms/es/reminder.j2").write_text(
        "Su cita está el {{ appointment.when }}, “{{ appointment.location }}”.\n"
    )
    return TemplateSet(root)


def test_every_message_renders_for_every_language_and_channel(templates: TemplateSet) -> None:
    found = preview.render_all(FLOW, templates, ORG)

    expected = {
        (spec.id, language, channel)
        for stage in FLOW.stages
        for spec in stage.messages
        for language in FLOW.languages
        for channel in spec.channels
    }
    assert {(m.message_id, m.language, m.channel) for m in found.messages} == expected
    assert len(found.messages) == len(expected)
    assert all(m.error is None and m.body for m in found.messages)
    assert all((m.sms is None) == (m.channel is Channel.EMAIL) for m in found.messages)


def test_the_sample_is_a_saturday_morning_in_the_flows_time_zone(templates: TemplateSet) -> None:
    [sms] = preview.render_all(
        FLOW, templates, ORG, message="confirmation", language="en", channel=Channel.SMS
    ).messages
    [email] = preview.render_all(
        FLOW, templates, ORG, message="confirmation", language="es", channel=Channel.EMAIL
    ).messages

    assert sms.body.startswith("confirmation: Sat Sep 26, 10:30 AM https://portal.example.org/r/")
    assert email.body == "sábado, 26 de septiembre de 2026 Dr. Maria Fernanda Rivera"
    assert email.subject == "confirmation"


def test_a_spanish_sms_says_which_characters_forced_ucs2(templates: TemplateSet) -> None:
    [shown] = preview.render_all(
        FLOW, templates, ORG, message="reminder_72h", language="es", channel=Channel.SMS
    ).messages

    # The curly quotes were written plain as it rendered; the accents are the author's.
    assert shown.body == 'Su cita está el sáb 26 sept, 10:30, "Main Campus, Bldg B".'
    assert shown.sms is not None
    assert shown.sms.encoding == "ucs2"
    assert [f.character for f in shown.sms.forcing] == ["á", "á"]
    assert shown.sms.suggestion == 'Su cita esta el sab 26 sept, 10:30, "Main Campus, Bldg B".'


def test_an_english_sms_with_babels_time_is_sent_in_gsm7(tmp_path: Path) -> None:
    # Babel writes "10:30 AM" with a narrow no-break space (U+202F), outside GSM-7.
    root = write_templates(tmp_path, ("confirmation",))
    (root / "sms/en/confirmation.j2").write_text("At {{ appointment.time }} — see you…")
    (root / "email/en/confirmation.j2").write_text(
        "{% block subject %}{{ appointment.time }}{% endblock %}"
        "{% block text %}{{ appointment.time }}{% endblock %}{% block html %}x{% endblock %}"
    )

    shown = preview.render_all(FLOW, TemplateSet(root), ORG, message="confirmation", language="en")
    sms = next(m for m in shown.messages if m.channel is Channel.SMS)
    email = next(m for m in shown.messages if m.channel is Channel.EMAIL)

    assert sms.body == "At 10:30 AM - see you..."
    assert sms.sms is not None and sms.sms.encoding == "gsm7"
    # Only the SMS is rewritten: an email carries any character.
    assert email.body == "10:30\u202fAM"


def test_each_persona_variant_renders_besides_the_message_itself(templates: TemplateSet) -> None:
    found = preview.render_all(PERSONAS, templates, ORG, message="reminder_24h", language="en")

    assert [(m.persona, m.template, m.channel) for m in found.messages] == [
        (None, "reminder", Channel.SMS),
        (None, "reminder", Channel.EMAIL),
        ("caregiver_coordinator", "reminder_caregiver", Channel.EMAIL),
    ]


def test_a_persona_without_a_variant_gets_the_message_itself(templates: TemplateSet) -> None:
    found = preview.render_all(
        PERSONAS, templates, ORG, message="reminder_24h", language="en", persona="urgent_worker"
    )

    assert [(m.persona, m.template) for m in found.messages] == [
        ("urgent_worker", "reminder"),
        ("urgent_worker", "reminder"),
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"message": "nope"}, "flow test-flow: no message 'nope'"),
        ({"language": "fr"}, "flow test-flow: language 'fr' is not one of en, es"),
        ({"persona": "nobody"}, "flow test-flow: no persona 'nobody'"),
    ],
)
def test_asking_for_what_the_flow_lacks_is_refused(
    templates: TemplateSet, options: dict[str, str], error: str
) -> None:
    with pytest.raises(preview.PreviewError) as raised:
        preview.render_all(FLOW, templates, ORG, **options)  # type: ignore[arg-type]

    assert str(raised.value) == error


def test_a_template_that_fails_is_shown_with_its_error(tmp_path: Path) -> None:
    templates = TemplateSet(write_templates(tmp_path, ("confirmation",)))

    found = preview.render_all(FLOW, templates, ORG, message="survey", language="en")

    assert [m.error for m in found.messages] == ["template email/en/survey.j2 does not exist"]


def test_the_preview_is_json(templates: TemplateSet) -> None:
    found = preview.render_all(FLOW, templates, ORG, message="reminder_72h", language="es")

    data = json.loads(json.dumps(found.to_json()))
    assert data["flow"] == "test-flow"
    assert [m["channel"] for m in data["messages"]] == ["sms", "email"]
    assert data["messages"][0]["sms"]["forcing"][0] == {
        "character": "á",
        "position": 11,
        "name": "LATIN SMALL LETTER A WITH ACUTE",
        "replacement": "a",
    }


class Recording:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def send(self, outgoing: Outgoing) -> Receipt:
        self.sent.append(outgoing)
        return Receipt(f"rec-{len(self.sent)}")

    def find(self, key: str) -> Receipt | None:
        return None


def test_a_test_send_goes_to_the_test_recipient_and_is_recorded(templates: TemplateSet) -> None:
    [shown] = preview.render_all(
        FLOW, templates, ORG, message="confirmation", language="es", channel=Channel.SMS
    ).messages
    store, connector = MemoryStore(), Recording()
    clock = VirtualClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))

    sent = preview.test_send(
        shown,
        recipient=preview.TestRecipient(phone="+15555550100"),
        connectors={Channel.SMS: connector},
        record=store,
        clock=clock,
    )

    [outgoing] = connector.sent
    assert (outgoing.to, outgoing.body, outgoing.key) == ("+15555550100", shown.body, sent.key)
    assert sent.key.startswith("test-")
    assert (sent.provider_id, sent.sent_at, sent.id) == ("rec-1", clock.now(), 1)
    assert store.test_sends() == [sent]
    assert store.messages() == [] and store.audit() == []


@pytest.mark.parametrize(
    ("channel", "setting"),
    [(Channel.SMS, "ORCHESTRATOR_TEST_PHONE"), (Channel.EMAIL, "ORCHESTRATOR_TEST_EMAIL")],
)
def test_a_test_send_without_a_test_recipient_is_refused(
    templates: TemplateSet, channel: Channel, setting: str
) -> None:
    [shown] = preview.render_all(
        FLOW, templates, ORG, message="confirmation", language="en", channel=channel
    ).messages
    store, connector = MemoryStore(), Recording()

    with pytest.raises(preview.PreviewError) as raised:
        preview.test_send(
            shown,
            recipient=preview.TestRecipient(),
            connectors={channel: connector},
            record=store,
            clock=VirtualClock(datetime(2026, 3, 2, tzinfo=UTC)),
        )

    assert str(raised.value) == f"no test recipient for {channel.value}: set {setting}"
    assert connector.sent == [] and store.test_sends() == []


def test_previewing_loads_no_store_web_framework_or_provider_sdk() -> None:
    code = (
        "import sys, orchestrator.preview, orchestrator.flows.loader\n"
        "heavy = ('fastapi', 'faust', 'sqlalchemy', 'twilio', 'sendgrid', 'httpx', 'alembic')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )

    assert done.stdout.strip() == "[]"
