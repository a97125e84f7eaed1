"""Loading flow files: every problem located as `file:line:column path: what`.

Each test starts from one small valid flow (`FLOW`, with its templates for
en/es on sms and email) written to tmp_path, changes one thing, and asserts
the exact problems reported. Line and column numbers refer to `FLOW`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import FlowError
from orchestrator.event import Channel, EventType
from orchestrator.flows.loader import load_flow, load_flow_text, load_flows
from orchestrator.flows.model import Flow, FrequencyCap, QuietHours, StageCategory
from orchestrator.flows.schema import FlowFile
from orchestrator.flows.timing import Anchor, Timing
from orchestrator.runtime.rendering import Organisation
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet
from tests.builders import flow_data
from tests.conftest import ROOT

FLOW_ID = "knee-replacement"
# Its portal URL gives the links their length: `https://portal.example.org/r/<12 characters>`.
ORG = Organisation("Riverside Health", "+1 555 0100", "https://portal.example.org")

# Tests assert line and column numbers in this text: keep its lines where they are.
FLOW = """\
id: knee-replacement
version: 1
title: Knee replacement
timezone: America/Chicago
default_language: en
languages: [en, es]
quiet_hours: {start: "21:00", end: "08:00"}
frequency_caps:
  sms: {limit: 3, per: 24h}
starts_on:
  - {event: referral.received, service: "ortho.*"}
  - {event: appointment.booked, service: "ortho.*"}
stages:
  - id: referred
    name: Referred
    category: awareness
    touchpoints: [referral, call_center]
    enter_on: [referral.received]
    messages:
      - id: welcome
        template: welcome
        channels: [sms]
        at: stage.entered + 10m
        cancel_on: [appointment.booked]
  - id: booked
    name: Booked
    category: access
    touchpoints: [portal, sms, email]
    enter_on: [appointment.booked]
    messages:
      - id: confirmation
        template: confirmation
        channels: [sms, email]
        at: stage.entered
        expires: appointment.start
      - id: reminder
        template: reminder
        channels: [sms]
        at: appointment.start - 24h
        window: {start: "09:00", end: "19:00"}
  - id: visited
    name: Visited
    category: follow_up
    enter_on: [appointment.completed]
    final: true
    messages:
      - id: survey
        template: survey
        channels: [email]
        at: stage.entered + 1d at 10:00
exits:
  - {event: consent.opted_out, outcome: opted_out, when: {attributes.channel: [all, null]}}
"""


def _email(subject: str, text: str) -> str:
    return (
        f"{{% block subject %}}{subject}{{% endblock %}}\n"
        f"{{% block text %}}\n{text}\n{{% endblock %}}\n"
        f"{{% block html %}}\n<p>{text}</p>\n{{% endblock %}}\n"
    )


TEMPLATES = {
    "sms/en/welcome.j2": "{{ org.name }}: we have your referral. Call {{ org.phone }} to book.",
    "sms/es/welcome.j2": "{{ org.name }}: recibimos su referencia. Llame al {{ org.phone }}.",
    "sms/en/confirmation.j2": "{{ org.name }}: booked for {{ appointment.when }}. {{ links.reschedule }}",
    "sms/es/confirmation.j2": "{{ org.name }}: cita el {{ appointment.when }}. {{ links.reschedule }}",
    "sms/en/reminder.j2": "{{ org.name }}: see you {{ appointment.when }}, {{ appointment.location }}.",
    "sms/es/reminder.j2": "{{ org.name }}: le esperamos el {{ appointment.when }}.",
    "email/en/confirmation.j2": _email(
        "Your visit on {{ appointment.date }}", "You see {{ appointment.provider }}."
    ),
    "email/es/confirmation.j2": _email(
        "Su cita del {{ appointment.date }}", "Le atiende {{ appointment.provider }}."
    ),
    "email/en/survey.j2": _email("How was your visit?", "Tell us: {{ links.survey }}"),
    "email/es/survey.j2": _email("¿Qué tal su visita?", "Cuéntenos: {{ links.survey }}"),
}


@dataclass
class Workspace:
    """A flows/ and a templates/ directory holding the valid `FLOW` and its templates."""

    root: Path

    @property
    def flows(self) -> Path:
        return self.root / "flows"

    @property
    def flow(self) -> Path:
        return self.flows / f"{FLOW_ID}.yaml"

    @property
    def templates(self) -> TemplateCheck:
        return TemplateCheck(TemplateSet(self.root / "templates"), ORG)

    def write(self, text: str, name: str = f"{FLOW_ID}.yaml") -> Path:
        path = self.flows / name
        path.write_text(text, encoding="utf-8")
        return path

    def edit(self, old: str, new: str) -> None:
        """Replace the one occurrence of `old` in the flow file."""
        text = self.flow.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not unique in the flow"
        self.flow.write_text(text.replace(old, new), encoding="utf-8")

    def write_template(self, name: str, text: str) -> None:
        path = self.root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def load(self, path: Path | None = None) -> Flow:
        return load_flow(path or self.flow, self.templates)

    def problems(self, path: Path | None = None) -> list[str]:
        with pytest.raises(FlowError) as info:
            self.load(path)
        return [str(problem) for problem in info.value.problems]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.flows.mkdir()
    workspace.write(FLOW)
    for name, text in TEMPLATES.items():
        workspace.write_template(name, text)
    return workspace


def test_valid_flow_loads_into_core_flow(ws: Workspace) -> None:
    flow = ws.load()

    assert (flow.id, flow.version, flow.title) == (FLOW_ID, 1, "Knee replacement")
    assert (flow.timezone, flow.default_language, flow.languages) == (
        "America/Chicago",
        "en",
        ("en", "es"),
    )
    assert flow.quiet_hours == QuietHours(time(21, 0), time(8, 0))
    assert flow.frequency_caps == {Channel.SMS: FrequencyCap(3, timedelta(hours=24))}
    assert [t.event for t in flow.starts_on] == [
        EventType.REFERRAL_RECEIVED,
        EventType.APPOINTMENT_BOOKED,
    ]
    assert [(s.id, s.category, s.final) for s in flow.stages] == [
        ("referred", StageCategory.AWARENESS, False),
        ("booked", StageCategory.ACCESS, False),
        ("visited", StageCategory.FOLLOW_UP, True),
    ]
    assert [[m.id for m in s.messages] for s in flow.stages] == [
        ["welcome"],
        ["confirmation", "reminder"],
        ["survey"],
    ]
    confirmation, reminder = flow.stage("booked").messages
    assert confirmation.channels == (Channel.SMS, Channel.EMAIL)
    assert confirmation.expiry == Timing(Anchor.APPOINTMENT_START)
    assert reminder.expiry == Timing(Anchor.APPOINTMENT_START)  # the default for reminders
    assert reminder.timing == Timing(Anchor.APPOINTMENT_START, -timedelta(hours=24))
    assert reminder.window == (time(9, 0), time(19, 0))
    survey = flow.stage("visited").messages[0]
    assert survey.timing == Timing(Anchor.STAGE_ENTERED, timedelta(days=1), time(10, 0))
    assert [(e.trigger.event, e.outcome) for e in flow.exits] == [
        (EventType.CONSENT_OPTED_OUT, "opted_out")
    ]


# Parsing the file


def test_invalid_yaml_syntax_reports_line_and_column(ws: Workspace) -> None:
    ws.edit("title: Knee replacement", "title: Knee: replacement")

    assert ws.problems() == [f"{ws.flow}:3:12: not valid YAML: mapping values are not allowed here"]


def test_empty_file_is_reported(ws: Workspace) -> None:
    ws.write("")

    assert ws.problems() == [f"{ws.flow}: the file is empty; expected a flow mapping"]


def test_top_level_list_is_not_a_flow(ws: Workspace) -> None:
    ws.write("- id: knee-replacement\n- version: 1\n")

    assert ws.problems() == [f"{ws.flow}:1:1: expected a mapping at the top of the file"]


def test_duplicate_key_is_reported_where_it_repeats(ws: Workspace) -> None:
    ws.edit("    name: Booked\n", "    name: Booked\n    name: Booking\n")

    assert ws.problems() == [f"{ws.flow}:27:5 stages[1].name: duplicate key"]


def test_duplicate_key_does_not_hide_other_problems(ws: Workspace) -> None:
    ws.edit("    name: Booked\n", "    name: Booked\n    name: Booking\n")
    ws.edit("category: follow_up", "category: followup")

    assert [p.split(": ")[0] for p in ws.problems()] == [
        f"{ws.flow}:27:5 stages[1].name",
        f"{ws.flow}:44:5 stages[2].category",
    ]


# Structure (schema)


def test_unknown_field_is_reported_with_its_path(ws: Workspace) -> None:
    ws.edit("channels: [sms, email]", "chanels: [sms, email]")

    assert ws.problems() == [
        f"{ws.flow}:31:9 stages[1].messages[0].channels: required field is missing",
        f"{ws.flow}:33:9 stages[1].messages[0].chanels: unknown field; did you mean 'channels'? "
        "expected one of id, template, channels, at, send_on, when, cancel_on, unless, expires, "
        "window, topic, essential, holdout, variants",
    ]


def test_yaml_boolean_key_on_is_reported_as_an_unknown_field_where_written(
    ws: Workspace,
) -> None:
    # YAML 1.1 reads the key `on` as true: the reason messages say `send_on`.
    ws.edit("        cancel_on: [appointment.booked]", "        on: [appointment.booked]")

    (problem,) = ws.problems()

    assert problem.startswith(f"{ws.flow}:24:9 stages[0].messages[0].on: "), problem


def test_missing_required_field_points_at_its_mapping(ws: Workspace) -> None:
    ws.edit("    category: follow_up\n", "")

    assert ws.problems() == [f"{ws.flow}:41:5 stages[2].category: required field is missing"]


def _assert_bad_value(problems: list[str], where: str, bad: str, expected: str) -> None:
    """One problem at `where` (`file:line:col path`) naming the bad value and a valid one."""
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{where}: Input should be "), problems[0]
    assert problems[0].endswith(f", got '{bad}'"), problems[0]
    assert f"'{expected}'" in problems[0]


def test_unknown_event_type_in_enter_on_is_named(ws: Workspace) -> None:
    ws.edit("enter_on: [appointment.booked]", "enter_on: [appointment.boked]")

    _assert_bad_value(
        ws.problems(),
        f"{ws.flow}:29:16 stages[1].enter_on[0].event",
        "appointment.boked",
        "appointment.booked",
    )


def test_unknown_category_is_named(ws: Workspace) -> None:
    ws.edit("category: access", "category: acess")

    _assert_bad_value(ws.problems(), f"{ws.flow}:27:5 stages[1].category", "acess", "access")


def test_unknown_touchpoint_is_named(ws: Workspace) -> None:
    ws.edit("touchpoints: [portal, sms, email]", "touchpoints: [portal, fax, email]")

    _assert_bad_value(ws.problems(), f"{ws.flow}:28:27 stages[1].touchpoints[1]", "fax", "portal")


def test_unknown_channel_of_a_message_is_named(ws: Workspace) -> None:
    ws.edit("channels: [sms, email]", "channels: [sms, fax]")

    _assert_bad_value(
        ws.problems(), f"{ws.flow}:33:25 stages[1].messages[0].channels[1]", "fax", "sms"
    )


def test_unknown_channel_in_frequency_caps_is_named(ws: Workspace) -> None:
    ws.edit("  sms: {limit: 3, per: 24h}", "  fax: {limit: 3, per: 24h}")

    _assert_bad_value(ws.problems(), f"{ws.flow}:9:3 frequency_caps.fax", "fax", "sms")


def test_bad_timing_syntax_shows_the_expected_form(ws: Workspace) -> None:
    ws.edit("at: appointment.start - 24h", "at: 3 days")

    assert ws.problems() == [
        f"{ws.flow}:39:9 stages[1].messages[1].at: expected a timing such as "
        '"appointment.start - 72h" or "stage.entered + 1d at 10:00", got "3 days"'
    ]


def test_bad_duration_in_frequency_caps_shows_the_expected_form(ws: Workspace) -> None:
    ws.edit("per: 24h", "per: 1 day")

    assert ws.problems() == [
        f"{ws.flow}:9:19 frequency_caps.sms.per: expected a duration such as "
        '"72h", "1d12h" or "30m", got "1 day"'
    ]


def test_bad_local_time_in_quiet_hours_shows_the_expected_form(ws: Workspace) -> None:
    ws.edit('start: "21:00"', 'start: "9pm"')

    assert ws.problems() == [
        f'{ws.flow}:7:15 quiet_hours.start: expected a time of day such as "08:00", got "9pm"'
    ]


def test_unknown_iana_timezone_is_named(ws: Workspace) -> None:
    ws.edit("timezone: America/Chicago", "timezone: America/Chicgo")

    assert ws.problems() == [f"{ws.flow}:4:1 timezone: unknown IANA time zone 'America/Chicgo'"]


def test_unknown_when_field_path_is_named_without_its_value(ws: Workspace) -> None:
    ws.edit("when: {attributes.channel: [all, null]}", 'when: {patient.phone: "+15555550101"}')

    problems = ws.problems()

    assert problems == [
        f"{ws.flow}:52:52 exits[0].when: unknown field path 'patient.phone'; expected service, "
        "source, patient.language, patient.timezone, patient.preferred_channel, "
        "patient.caregivers, appointment.service|location|provider, "
        "encounter.service|disposition or attributes.<name>"
    ]
    assert "+15555550101" not in problems[0]


# The whole flow


def test_duplicate_stage_id_names_the_first_definition(ws: Workspace) -> None:
    ws.edit("  - id: visited", "  - id: booked")

    assert ws.problems() == [
        f"{ws.flow}:41:5 stages[2].id: stage 'booked' is already defined at stages[1]"
    ]


def test_duplicate_message_id_names_the_first_definition(ws: Workspace) -> None:
    ws.edit("      - id: survey", "      - id: confirmation")

    assert ws.problems() == [
        f"{ws.flow}:47:9 stages[2].messages[0].id: "
        "message 'confirmation' is already defined at stages[1].messages[0]"
    ]


def test_unknown_stage_in_from_is_named(ws: Workspace) -> None:
    ws.edit(
        "enter_on: [appointment.completed]",
        "enter_on: [{event: appointment.completed, from: [booked, boked]}]",
    )

    assert ws.problems() == [
        f"{ws.flow}:44:62 stages[2].enter_on[0].from[1]: unknown stage 'boked'"
    ]


def test_starting_event_that_enters_no_stage_is_reported(ws: Workspace) -> None:
    ws.edit("starts_on:\n", "starts_on:\n  - {event: patient.admitted}\n")

    assert ws.problems() == [
        f"{ws.flow}:11:6 starts_on[0].event: "
        "no stage is entered on 'patient.admitted', so it starts nothing"
    ]


def test_unreachable_stage_is_reported(ws: Workspace) -> None:
    ws.edit(
        "enter_on: [appointment.completed]",
        "enter_on: [{event: appointment.completed, from: [visited]}]",
    )

    assert ws.problems() == [
        f"{ws.flow}:41:5 stages[2]: "
        "stage 'visited' is unreachable: no start or earlier stage leads to it"
    ]


def test_appointment_anchor_in_a_stage_entered_only_by_referral_is_never_known(
    ws: Workspace,
) -> None:
    ws.edit("at: stage.entered + 10m", "at: appointment.start - 24h")

    assert ws.problems() == [
        f"{ws.flow}:23:9 stages[0].messages[0].at: anchor 'appointment.start' is never known "
        "here: no event up to this stage is one of appointment.booked, appointment.cancelled, "
        "appointment.checked_in, appointment.completed, appointment.no_show, "
        "appointment.rescheduled, intake.completed, intake.documents_missing, intake.sent, "
        "intake.started"
    ]


def test_expiry_not_after_due_time_is_reported(ws: Workspace) -> None:
    ws.edit("at: stage.entered\n", "at: appointment.start + 1h\n")

    assert ws.problems() == [
        f"{ws.flow}:35:9 stages[1].messages[0].expires: it expires (appointment.start) "
        "no later than it is due (appointment.start + 1h), so it never fires"
    ]


def test_at_local_time_inside_quiet_hours_is_reported(ws: Workspace) -> None:
    ws.edit("at: stage.entered + 1d at 10:00", "at: stage.entered + 1d at 22:00")

    assert ws.problems() == [
        f"{ws.flow}:50:9 stages[2].messages[0].at: "
        "22:00 is inside quiet hours 21:00-08:00, so it is always deferred"
    ]


def test_send_window_inside_quiet_hours_is_reported(ws: Workspace) -> None:
    ws.edit('window: {start: "09:00", end: "19:00"}', 'window: {start: "22:00", end: "07:00"}')

    assert ws.problems() == [
        f"{ws.flow}:40:9 stages[1].messages[1].window: "
        "the window lies inside quiet hours 21:00-08:00, so it never fires"
    ]


def test_empty_send_window_is_reported(ws: Workspace) -> None:
    ws.edit('window: {start: "09:00", end: "19:00"}', 'window: {start: "09:00", end: "09:00"}')

    assert ws.problems() == [
        f"{ws.flow}:40:9 stages[1].messages[1].window: the window is empty (start equals end)"
    ]


def test_default_language_outside_languages_is_reported(ws: Workspace) -> None:
    ws.edit("default_language: en", "default_language: fr")

    assert ws.problems() == [f"{ws.flow}:5:1 default_language: 'fr' is not in languages"]


# Templates


def test_missing_template_names_channel_and_language(ws: Workspace) -> None:
    (ws.root / "templates/sms/es/reminder.j2").unlink()

    assert ws.problems() == [
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "no template 'reminder' for language 'es' on channel 'sms'"
    ]


def test_template_syntax_error_names_template_and_line(ws: Workspace) -> None:
    ws.write_template("sms/es/confirmation.j2", "{{ org.name }}:\ncita el {{ appointment.when ")

    assert ws.problems() == [
        f"{ws.flow}:32:9 stages[1].messages[0].template: template sms/es/confirmation.j2 "
        "line 2: unexpected end of template, expected 'end of print statement'."
    ]


def test_email_template_without_a_block_is_reported(ws: Workspace) -> None:
    ws.write_template(
        "email/en/survey.j2",
        "{% block subject %}How was it?{% endblock %}\n{% block text %}Tell us{% endblock %}\n",
    )

    assert ws.problems() == [
        f"{ws.flow}:48:9 stages[2].messages[0].template: "
        "template email/en/survey.j2: missing block(s) html"
    ]


def test_sms_template_over_two_segments_is_reported(ws: Workspace) -> None:
    # "Riverside Health: " (18) + 300 = 318 GSM-7 characters: three segments of 153.
    ws.write_template("sms/en/reminder.j2", "{{ org.name }}: " + "z" * 300)

    assert ws.problems() == [
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "template sms/en/reminder.j2 renders to 3 SMS segments for the patient "
        "(sample date Wed 23 Sep 2026); at most 2 allowed"
    ]


def test_spanish_sms_over_two_segments_names_the_characters_that_forced_ucs2(
    ws: Workspace,
) -> None:
    # 18 + 140 characters: one GSM-7 segment, but the accents make it UCS-2 (67 a segment).
    text = "Recordatorio: su cita es el sábado; traiga identificación y la lista médica. " * 2
    ws.write_template("sms/es/reminder.j2", "{{ org.name }}: " + text[:140])

    assert ws.problems() == [
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "template sms/es/reminder.j2 renders to 3 SMS segments for the patient "
        "(sample date Wed 23 Sep 2026); at most 2 allowed; UCS-2 because of 'á' x2, 'ó' x2; without them (GSM-7: 'á'->'a', "
        "'ó'->'o') it would take 1 segment(s)"
    ]


def test_sms_caregiver_wording_over_two_segments_is_reported(ws: Workspace) -> None:
    ws.write_template(
        "sms/en/reminder.j2",
        "{% if recipient.is_caregiver %}{{ org.name }}: "
        + "z" * 300
        + "{% else %}Short.{% endif %}",
    )

    assert ws.problems() == [
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "template sms/en/reminder.j2 renders to 3 SMS segments for a caregiver "
        "(sample date Wed 23 Sep 2026); at most 2 allowed"
    ]


def test_spanish_sms_is_checked_as_sent_on_the_worst_case_day_with_the_real_links(
    ws: Workspace,
) -> None:
    # GSM-7 but for the date. As sent on a Saturday in September ("sáb 26 sept",
    # 18 characters) with the portal's link (41), it is 18 + 8 + 18 + 11 + 41 + 1
    # + 40 = 137 UCS-2 units: three segments of 67. The old sample ("sep", an
    # example.org link of 27) made it 122, two segments.
    ws.write_template(
        "sms/es/confirmation.j2",
        "{{ org.name }}: cita el {{ appointment.when }}. Cambios: {{ links.reschedule }} "
        + "x" * 40,
    )

    assert ws.problems() == [
        f"{ws.flow}:32:9 stages[1].messages[0].template: "
        "template sms/es/confirmation.j2 renders to 3 SMS segments for the patient "
        "(sample date Sat 26 Sep 2026); at most 2 allowed; UCS-2 because of 'á'; "
        "without them (GSM-7: 'á'->'a') it would take 1 segment(s)"
    ]


def test_sms_is_checked_with_the_configured_portal_url(ws: Workspace) -> None:
    # 18 + 8 + 18 + 11 + 41 + 1 + 37 = 134 UCS-2 units on the worst day: two segments,
    # until the portal's URL is one character longer.
    ws.write_template(
        "sms/es/confirmation.j2",
        "{{ org.name }}: cita el {{ appointment.when }}. Cambios: {{ links.reschedule }} "
        + "x" * 37,
    )
    assert ws.load().id == FLOW_ID
    longer = TemplateCheck(
        TemplateSet(ws.root / "templates"),
        Organisation(ORG.name, ORG.phone, "https://portal.example.org/a"),
    )

    with pytest.raises(FlowError, match="renders to 3 SMS segments"):
        load_flow(ws.flow, longer)


def test_sms_template_of_exactly_two_segments_is_accepted(ws: Workspace) -> None:
    # 18 + 288 = 306 GSM-7 characters: two full segments.
    ws.write_template("sms/en/reminder.j2", "{{ org.name }}: " + "z" * 288)

    assert ws.load().id == FLOW_ID


def test_a_language_without_a_locale_is_reported_not_raised(ws: Workspace) -> None:
    ws.edit("languages: [en, es]", "languages: [en, xx]")

    assert ws.problems() == [f"{ws.flow}:6:17 languages[1]: unknown language 'xx' (no locale)"]


def test_template_using_an_undefined_variable_is_reported(ws: Workspace) -> None:
    # The SMS context has no provider, so an SMS cannot name one.
    ws.write_template("sms/en/reminder.j2", "See {{ appointment.provider }} tomorrow.")

    assert ws.problems() == [
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "template sms/en/reminder.j2: 'dict object' has no attribute 'provider'"
    ]


# Files


def test_file_name_differing_from_flow_id_is_reported(ws: Workspace) -> None:
    other = ws.write(FLOW, name="knee.yaml")

    assert ws.problems(other) == [
        f"{other}:1:1 id: flow id 'knee-replacement' differs from the file name 'knee'"
    ]


def test_two_files_with_the_same_flow_id_are_reported(ws: Workspace) -> None:
    second = ws.write(FLOW, name=f"{FLOW_ID}.yml")

    with pytest.raises(FlowError) as info:
        load_flows([ws.flows], ws.templates)

    assert [str(p) for p in info.value.problems] == [
        f"{second}:1:1 id: flow 'knee-replacement' is also defined in {ws.flow}"
    ]


def test_directory_of_valid_flows_loads_by_id(ws: Workspace) -> None:
    loaded = load_flows([ws.flows], ws.templates)

    assert list(loaded.flows) == [FLOW_ID]
    assert loaded.files == {FLOW_ID: ws.flow}


# Several problems


def test_every_structural_problem_is_reported_at_once(ws: Workspace) -> None:
    ws.edit("timezone: America/Chicago", "timezone: America/Chicgo")
    ws.edit("category: access", "category: acess")
    ws.edit("at: appointment.start - 24h", "at: 3 days")
    ws.edit("      - id: survey", "      - id: Survey")

    problems = ws.problems()

    assert [p.split(": ")[0] for p in problems] == [
        f"{ws.flow}:4:1 timezone",
        f"{ws.flow}:27:5 stages[1].category",
        f"{ws.flow}:39:9 stages[1].messages[1].at",
        f"{ws.flow}:47:9 stages[2].messages[0].id",
    ]


def test_every_whole_flow_and_template_problem_is_reported_at_once(ws: Workspace) -> None:
    ws.edit("default_language: en", "default_language: fr")
    ws.edit("      - id: survey", "      - id: confirmation")
    ws.edit('window: {start: "09:00", end: "19:00"}', 'window: {start: "09:00", end: "09:00"}')
    (ws.root / "templates/sms/es/reminder.j2").unlink()
    (ws.root / "templates/email/en/survey.j2").unlink()

    assert ws.problems() == [
        f"{ws.flow}:47:9 stages[2].messages[0].id: "
        "message 'confirmation' is already defined at stages[1].messages[0]",
        f"{ws.flow}:40:9 stages[1].messages[1].window: the window is empty (start equals end)",
        f"{ws.flow}:5:1 default_language: 'fr' is not in languages",
        f"{ws.flow}:37:9 stages[1].messages[1].template: "
        "no template 'reminder' for language 'es' on channel 'sms'",
        f"{ws.flow}:48:9 stages[2].messages[0].template: "
        "no template 'survey' for language 'en' on channel 'email'",
    ]


def test_problems_of_every_file_in_a_directory_are_reported(ws: Workspace) -> None:
    ws.edit("category: access", "category: acess")
    other = ws.write(
        FLOW.replace("title: Knee replacement", "title: Knee: replacement"), "hip.yaml"
    )

    with pytest.raises(FlowError) as info:
        load_flows([ws.flows], ws.templates)

    assert [str(p).split(": ")[0] for p in info.value.problems] == [
        f"{other}:3:12",
        f"{ws.flow}:27:5 stages[1].category",
    ]


def test_a_slug_longer_than_the_store_keeps_is_refused_by_the_flow_file() -> None:
    # Stage and message ids are stored in columns of 100: a longer one would pass
    # validate and simulate, then fail every batch on PostgreSQL.
    data = flow_data()
    data["stages"][0]["id"] = "s" * 65
    with pytest.raises(ValidationError, match=r"should match pattern"):
        FlowFile.model_validate(data)
    data["stages"][0]["id"] = "s" * 64
    FlowFile.model_validate(data)


_BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else 'x'}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("id: x\x00\n", "not valid YAML"),
        ("stages: " + "[" * 3000 + "]" * 3000, "nested deeper"),
        ("".join(" " * i + "a:\n" for i in range(100)), "nested deeper"),
        (_BILLION_LAUGHS, "alias counts each time"),
        ("a: &a [*a]", "nested deeper"),
        ("x: " + "y" * 300_000, "longer than 256 KiB"),
        ("id: x\nname: \ud800\n", "special characters are not allowed"),  # a lone surrogate
    ],
)
def test_hostile_text_is_one_clear_problem(text: str, said: str) -> None:
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "draft.yaml", "x")

    assert len(caught.value.problems) == 1
    assert said in str(caught.value.problems[0])
    assert str(caught.value.problems[0]).startswith("draft.yaml")


def test_text_loads_as_its_file_would() -> None:
    text = (ROOT / "flows" / "knee-replacement.yaml").read_text()

    flow, document = load_flow_text(text, "knee-replacement.yaml", "knee-replacement")

    assert flow == load_flow(ROOT / "flows" / "knee-replacement.yaml")
    assert document.id == "knee-replacement"
    with pytest.raises(FlowError, match="differs from the file name 'other'"):
        load_flow_text(text, "other.yaml", "other")
