"""The shipped care paths: valid, bilingual, and discreet in SMS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.event import Channel
from orchestrator.flows import load_flows
from orchestrator.sms import segments
from orchestrator.templates import EMAIL_BLOCKS, TemplateSet, sample_context

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = TemplateSet(ROOT / "templates")
FLOWS = load_flows([ROOT / "flows"], TEMPLATES).flows
# Words that would tell anyone reading a phone's lock screen what the care is about.
CLINICAL = re.compile(
    r"\b(knee|surg\w*|cardi\w*|heart|mri|ct|scan\w*|imaging|x-?ray|mental|behaviou?ral|therap\w*|"
    r"counsel\w*|psych\w*|diagnos\w*|rodilla|cirug\w*|coraz\w*|terapia|resonancia|radiograf\w*)\b",
    re.IGNORECASE,
)
SMS_TEMPLATES = sorted(
    {
        (language, spec.template)
        for flow in FLOWS.values()
        for stage in flow.stages
        for spec in stage.messages
        if Channel.SMS in spec.channels
        for language in flow.languages
    }
)


def test_four_care_paths_ship_and_validate_with_their_templates() -> None:
    assert {
        "cardiology-consult",
        "knee-replacement",
        "imaging-referral",
        "behavioral-health-intake",
    } <= set(FLOWS)
    assert all(set(flow.languages) >= {"en", "es"} for flow in FLOWS.values())


@pytest.mark.parametrize(("language", "template"), SMS_TEMPLATES)
@pytest.mark.parametrize("caregiver", [False, True], ids=["patient", "caregiver"])
def test_sms_names_no_diagnosis_or_procedure_and_fits_two_segments(
    language: str, template: str, caregiver: bool
) -> None:
    context = sample_context(Channel.SMS, language)
    context["recipient"] = {
        "is_caregiver": caregiver,
        "relationship": "daughter" if caregiver else None,
    }
    body = TEMPLATES.render(Channel.SMS, language, template, context).body
    assert not CLINICAL.search(body), body
    assert segments(body) <= 2
    assert "STOP" in body


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
