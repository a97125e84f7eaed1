"""Checks that need the whole flow: references, reachability, anchors, timings
that can never fire; and the protocol the templates are checked through.

Pure: the templates are reached through the `TemplateCatalog` protocol, which
the shell implements over the templates directory (`template_check`); the
loader asks it about the flow these checks passed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from typing import Protocol

from ..event import EventType
from .model import ANY_STAGE, Flow, QuietHours
from .schema import FlowFile, MessageModel, StageModel
from .timing import Anchor, parse_local_time, parse_timing

__all__ = ["Problem", "TemplateCatalog", "check_flow"]

Problem = tuple[str, str]
"""A field path such as `stages[3].messages[1].template`, and what is wrong there."""


class TemplateCatalog(Protocol):
    def problems(self, flow: Flow) -> Sequence[Problem]:
        """What is wrong with the flow's templates (missing, unparsable, too long); empty if fine."""
        ...


_APPOINTMENT_EVENTS = frozenset(
    t for t in EventType if t.value.startswith(("appointment.", "intake."))
)
_ANCHOR_SOURCES: dict[Anchor, frozenset[EventType]] = {
    Anchor.APPOINTMENT_START: _APPOINTMENT_EVENTS,
    Anchor.ENCOUNTER_ADMITTED_AT: frozenset(
        {EventType.PATIENT_ADMITTED, EventType.PATIENT_DISCHARGED}
    ),
    Anchor.ENCOUNTER_DISCHARGED_AT: frozenset({EventType.PATIENT_DISCHARGED}),
}


def check_flow(flow: FlowFile) -> list[Problem]:
    """Every cross-field problem of a structurally valid flow."""
    problems: list[Problem] = []
    problems += _unique_ids(flow)
    problems += _stage_references(flow)
    problems += _starts_have_a_stage(flow)
    problems += _unreachable_stages(flow)
    problems += _anchors_available(flow)
    problems += _timings_that_never_fire(flow)
    problems += _personas(flow)
    if flow.default_language not in flow.languages:
        problems.append(("default_language", f"'{flow.default_language}' is not in languages"))
    return problems


def _personas(flow: FlowFile) -> list[Problem]:
    problems: list[Problem] = []
    stages = {stage.id for stage in flow.stages}
    seen: set[str] = set()
    for i, persona in enumerate(flow.personas):
        if persona.id in seen:
            problems.append((f"personas[{i}].id", f"persona '{persona.id}' is already defined"))
        seen.add(persona.id)
        for j, stage in enumerate(persona.focus):
            if stage not in stages:
                problems.append((f"personas[{i}].focus[{j}]", f"unknown stage '{stage}'"))
    for path, _, message in _messages(flow):
        named: set[str] = set()
        for k, variant in enumerate(message.variants):
            if variant.persona not in seen:
                problems.append(
                    (f"{path}.variants[{k}].persona", f"unknown persona '{variant.persona}'")
                )
            if variant.persona in named:
                problems.append(
                    (f"{path}.variants[{k}].persona", f"a second variant for '{variant.persona}'")
                )
            named.add(variant.persona)
    return problems


def _messages(flow: FlowFile) -> Iterator[tuple[str, StageModel, MessageModel]]:
    for i, stage in enumerate(flow.stages):
        for j, message in enumerate(stage.messages):
            yield f"stages[{i}].messages[{j}]", stage, message


def _unique_ids(flow: FlowFile) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for i, stage in enumerate(flow.stages):
        if stage.id in seen:
            problems.append(
                (f"stages[{i}].id", f"stage '{stage.id}' is already defined at {seen[stage.id]}")
            )
        seen.setdefault(stage.id, f"stages[{i}]")
    messages: dict[str, str] = {}
    for path, _, message in _messages(flow):
        if message.id in messages:
            problems.append(
                (
                    f"{path}.id",
                    f"message '{message.id}' is already defined at {messages[message.id]}",
                )
            )
        messages.setdefault(message.id, path)
    return problems


def _stage_references(flow: FlowFile) -> list[Problem]:
    known = {stage.id for stage in flow.stages}
    problems: list[Problem] = []
    for i, stage in enumerate(flow.stages):
        for j, trigger in enumerate(stage.enter_on):
            for k, source in enumerate(trigger.from_ or ()):
                if source != ANY_STAGE and source not in known:
                    problems.append(
                        (f"stages[{i}].enter_on[{j}].from[{k}]", f"unknown stage '{source}'")
                    )
    return problems


def _starts_have_a_stage(flow: FlowFile) -> list[Problem]:
    entered = {t.event for stage in flow.stages for t in stage.enter_on}
    return [
        (f"starts_on[{i}].event", f"no stage is entered on '{t.event.value}', so it starts nothing")
        for i, t in enumerate(flow.starts_on)
        if t.event not in entered
    ]


def _unreachable_stages(flow: FlowFile) -> list[Problem]:
    starts = {t.event for t in flow.starts_on}
    # Any stage entered by a starting event can open an episode.
    reachable = {i for i, s in enumerate(flow.stages) if any(t.event in starts for t in s.enter_on)}
    index = {stage.id: i for i, stage in enumerate(flow.stages)}
    changed = True
    while changed:
        changed = False
        for i, stage in enumerate(flow.stages):
            if i in reachable:
                continue
            for trigger in stage.enter_on:
                sources = trigger.from_
                if not sources:
                    came_from = set(range(i))
                elif ANY_STAGE in sources:
                    came_from = set(range(len(flow.stages)))
                else:
                    came_from = {index[s] for s in sources if s in index}
                if came_from & reachable:
                    reachable.add(i)
                    changed = True
                    break
    return [
        (
            f"stages[{i}]",
            f"stage '{stage.id}' is unreachable: no start or earlier stage leads to it",
        )
        for i, stage in enumerate(flow.stages)
        if i not in reachable
    ]


def _anchors_available(flow: FlowFile) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[EventType] = set()  # what enters this stage or an earlier one
    for i, stage in enumerate(flow.stages):
        seen |= {t.event for t in stage.enter_on}
        for j, message in enumerate(stage.messages):
            events = seen | {t.event for t in message.send_on}
            for field in ("at", "expires"):
                text = getattr(message, field)
                if text is None:
                    continue
                anchor = parse_timing(text).anchor
                sources = _ANCHOR_SOURCES.get(anchor)
                if sources is not None and not (events & sources):
                    problems.append(
                        (
                            f"stages[{i}].messages[{j}].{field}",
                            f"anchor '{anchor.value}' is never known here: no event up to this "
                            f"stage is one of {', '.join(sorted(t.value for t in sources))}",
                        )
                    )
    return problems


def _timings_that_never_fire(flow: FlowFile) -> list[Problem]:
    quiet = QuietHours(
        parse_local_time(flow.quiet_hours.start), parse_local_time(flow.quiet_hours.end)
    )
    problems: list[Problem] = []
    for path, _, message in _messages(flow):
        due = parse_timing(message.at)
        if message.expires is not None:
            expiry = parse_timing(message.expires)
            comparable = due.anchor is expiry.anchor and due.at is None and expiry.at is None
            if comparable and due.offset >= expiry.offset:
                problems.append(
                    (
                        f"{path}.expires",
                        f"it expires ({expiry}) no later than it is due ({due}), so it never fires",
                    )
                )
        if due.at is not None and quiet.contains(due.at) and message.window is None:
            problems.append(
                (
                    f"{path}.at",
                    f"{due.at:%H:%M} is inside quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M}, so it is always deferred",
                )
            )
        if message.window is not None:
            start, end = message.window.to_core()
            if start == end:
                problems.append((f"{path}.window", "the window is empty (start equals end)"))
            elif _window_inside_quiet(start, end, quiet):
                problems.append(
                    (
                        f"{path}.window",
                        f"the window lies inside quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M}, so it never fires",
                    )
                )
    return problems


def _window_inside_quiet(start: time, end: time, quiet: QuietHours) -> bool:
    # Walk the window minute by minute: a window is at most a day long.
    day = date(2000, 1, 1)
    t = datetime.combine(day, start)
    stop = datetime.combine(day, end)
    if stop <= t:
        stop += timedelta(days=1)
    while t < stop:
        if not quiet.contains(t.time()):
            return False
        t += timedelta(minutes=1)
    return True
