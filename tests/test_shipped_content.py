"""The shipped care paths: valid, bilingual, and discreet in SMS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.event import Channel
from orchestrator.flows import load_flows
from orchestrator.flows.model import Flow
from orchestrator.preview import render_all
from orchestrator.runtime.rendering import Organisation
from orchestrator.settings import Settings
from orchestrator.template_check import MAX_SMS_SEGMENTS, TemplateCheck, worst_case_samples
from orchestrator.templates import EMAIL_BLOCKS, TemplateSet

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = TemplateSet(ROOT / "templates")
# The organisation a deployment starts with (settings' defaults): its portal URL shapes the links.
ORG = Organisation.of(Settings())
FLOWS = load_flows([ROOT / "flows"]).flows
# Words that would tell anyone reading a phone's lock screen what the care is about.
CLINICAL = re.compile(
    r"\b(knee|surg\w*|cardi\w*|heart|mri|ct|scan\w*|imaging|x-?ray|mental|behaviou?ral|therap\w*|"
    r"counsel\w*|psych\w*|diagnos\w*|rodilla|cirug\w*|coraz\w*|terapia|resonancia|radiograf\w*)\b",
    re.IGNORECASE,
)
SHIPPED = sorted(
    (flow_id, language) for flow_id, flow in FLOWS.items() for language in flow.languages
)


def test_four_care_paths_ship_and_validate_with_their_templates() -> None:
    assert {
        "cardiology-consult",
        "knee-replacement",
        "imaging-referral",
        "behavioral-health-intake",
    } <= set(FLOWS)
    assert all(set(flow.languages) >= {"en", "es"} for flow in FLOWS.values())
    load_flows([ROOT / "flows"], TemplateCheck(TEMPLATES, ORG))


@pytest.mark.parametrize(("flow_id", "language"), SHIPPED)
def test_every_sms_as_sent_at_worst_case_dates_names_no_diagnosis_and_fits_two_segments(
    flow_id: str, language: str
) -> None:
    # The dispatcher's own rendering, for the patient and a caregiver, on the
    # days whose month and weekday names are longest (and force UCS-2).
    flow: Flow = FLOWS[flow_id]
    samples = worst_case_samples(language)
    assert len({s.caregiver for s in samples}) == 2
    too_long = []
    for sample in samples:
        for m in render_all(
            flow, TEMPLATES, ORG, language=language, channel=Channel.SMS, sample=sample
        ).messages:
            assert m.error is None and m.sms is not None, m.error
            assert not CLINICAL.search(m.body), m.body
            assert "STOP" in m.body, m.body
            if m.sms.segments > MAX_SMS_SEGMENTS:
                too_long.append(f"{m.message_id} {m.sms.segments} ({m.sms.encoding}): {m.body}")
    assert not too_long, "\n".join(too_long)


def test_every_email_template_has_subject_text_and_html() -> None:
    for path in sorted((ROOT / "templates" / "email").rglob("*.j2")):
        source = path.read_text()
        for block in EMAIL_BLOCKS:
            assert f"{{% block {block} %}}" in source, f"{path}: no {block} block"


def test_sample_events_use_only_reserved_numbers_and_example_addresses() -> None:
    for path in sorted((ROOT / "samples" / "events").glob("*.jsonl")):
        text = path.read_text()
        phones = re.findall(r"\+1\d{10}", text)
        emails = re.findall(r"[\w.+-]+@[\w.-]+", text)
        assert phones and all(
            re.fullmatch(r"\+1555555\d{4}", p) and p[-4:-2] == "01" for p in phones
        ), path
        assert emails and all(e.endswith("@example.org") for e in emails), path
