"""The compiled flow (`Flow.plan`) says what `Condition.holds` and `Trigger.matches` say."""

from __future__ import annotations

import itertools
import pickle
from dataclasses import replace

import pytest

from orchestrator.event import Event, EventType
from orchestrator.flows.model import Condition, Exit, Trigger
from orchestrator.flows.plan import compile_conditions, matches_any
from tests.builders import make_event, make_flow

# Every kind of value a condition may allow: texts with and without wildcards,
# numbers, booleans (never equal to 1 or 0 here) and null.
ALLOWED: list[object] = [
    "cardiology.consult",
    "cardiology.*",
    "card?ology.consult",
    "[ab]*",
    "self",
    "1",
    1,
    0,
    1.5,
    True,
    False,
    None,
]
VALUES: list[object] = [
    "cardiology.consult",
    "cardiology.echo",
    "cardiology.*",
    "ab",
    "self",
    "1",
    1,
    0,
    1.5,
    True,
    False,
    None,
    [1],
    {"a": 1},
]


def _events() -> list[Event]:
    return [make_event("referral.received", attributes={"x": value}) for value in VALUES]


@pytest.mark.parametrize(
    "allowed", [(a,) for a in ALLOWED] + list(itertools.combinations(ALLOWED, 2))
)
def test_a_compiled_condition_holds_where_the_condition_holds(allowed: tuple[object, ...]) -> None:
    condition = Condition("attributes.x", allowed)  # type: ignore[arg-type]
    compiled = compile_conditions((condition,))
    assert compiled is not None
    for event in _events():
        assert compiled(event) is condition.holds(event), (allowed, event.attributes["x"])


def test_a_text_enum_value_matches_by_its_text() -> None:
    event = make_event("appointment.booked")
    for allowed in (("appointment.booked",), ("appointment.*",), ("intake.*",)):
        condition = Condition("type", allowed)
        compiled = compile_conditions((condition,))
        assert compiled is not None
        assert compiled(event) is condition.holds(event)


def test_service_conditions_read_the_events_service() -> None:
    both = (Condition("service", ("cardiology.*",)), Condition("appointment.location", ("Main*",)))
    compiled = compile_conditions(both)
    assert compiled is not None
    assert compiled(make_event(service="cardiology.consult"))
    assert not compiled(make_event(service="imaging.mri"))
    assert compile_conditions(()) is None


def test_triggers_are_indexed_by_type_in_flow_order() -> None:
    flow = make_flow()
    plan = flow.plan
    for event in (make_event(t) for t in ("appointment.booked", "appointment.cancelled")):
        expected = [
            (j, stage.id)
            for j, stage in enumerate(flow.stages)
            for trigger in stage.enter_on
            if trigger.matches(event)
        ]
        found = [
            (entry.position, entry.stage.id)
            for entry in plan.entries.get(event.type, ())
            if entry.match is None or entry.match(event)
        ]
        assert found == expected
        assert plan.starts_on(event) is any(t.matches(event) for t in flow.starts_on)


def test_the_first_exit_an_event_matches_gives_the_outcome() -> None:
    narrow = Trigger(EventType.CONSENT_OPTED_OUT, (Condition("attributes.channel", ("sms",)),))
    wide = Trigger(EventType.CONSENT_OPTED_OUT)
    flow = replace(make_flow(), exits=(Exit(narrow, "sms_only"), Exit(wide, "all")))
    sms = make_event("consent.opted_out", attributes={"channel": "sms"})
    email = make_event("consent.opted_out", attributes={"channel": "email"})
    assert flow.plan.exit_outcome(sms) == "sms_only"
    assert flow.plan.exit_outcome(email) == "all"
    assert flow.plan.exit_outcome(make_event("appointment.booked")) is None
    assert matches_any((None,), email)


def test_a_flow_whose_message_ids_repeat_has_no_plan() -> None:
    # The YAML loader refuses these; a flow built in code must be refused too,
    # or entering one stage would schedule the other stage's message.
    flow = make_flow()
    first, second = flow.stages[0], flow.stages[1]
    twin = replace(second, messages=(replace(second.messages[0], id=first.messages[0].id),))
    twice = replace(flow, stages=(first, twin, *flow.stages[2:]))
    with pytest.raises(ValueError, match="used twice"):
        _ = twice.plan


def test_a_used_flow_pickles_and_plans_again() -> None:
    flow = make_flow()
    assert flow.plan.starts_on(make_event("appointment.booked"))  # the plan is built
    copy = pickle.loads(pickle.dumps(flow))
    assert copy == flow
    assert "plan" not in vars(copy)
    assert copy.plan.starts_on(make_event("appointment.booked"))
    assert "plan" in vars(flow)  # pickling leaves the original's plan in place


def test_a_wildcard_condition_answers_the_same_past_what_it_remembers() -> None:
    # A condition with wildcards remembers each text's answer, up to a bound: past
    # it, and asked again, it still says what the condition says.
    condition = Condition("attributes.x", ("cardiology.*", "imaging.mri", "[ab]?"))
    compiled = compile_conditions((condition,))
    assert compiled is not None
    texts = [f"cardiology.{i}" if i % 3 else f"other.{i}" for i in range(2500)]
    texts += ["imaging.mri", "ab", "abc", "cardiology.", "Cardiology.x"]
    events = [make_event("referral.received", attributes={"x": text}) for text in texts]
    for event in [*events, *events[::-1]]:
        assert compiled(event) is condition.holds(event), event.attributes["x"]
