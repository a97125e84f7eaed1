"""A flow as the engine reads it on every event: triggers as functions, indexed by event type.

`Flow.plan` builds one `FlowPlan` per flow, once. It holds nothing the flow
does not: the same triggers, in the same order, with their conditions
compiled to plain functions (a glob becomes its regular expression, a value
without wildcards a set lookup) and grouped by the event type they name, so
that the fold looks at only the triggers an event can match. The meaning is
`Condition.holds` and `Trigger.matches`; `tests/orchestrator/flows/test_plan.py`
checks that they agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import translate
from operator import attrgetter
from typing import TYPE_CHECKING

from ..event import Event, EventType
from .timing import Anchor

if TYPE_CHECKING:
    from .model import Condition, Flow, MessageSpec, Stage, Trigger

__all__ = [
    "EntryPlan",
    "FlowPlan",
    "Match",
    "SpecPlan",
    "compile_conditions",
    "matches_any",
    "waits_for_appointment",
]

# Whether an event meets a trigger's or a message's conditions; `None` where
# there are none (every event of the type does).
Match = Callable[[Event], bool] | None

_GLOB = re.compile(r"[*?\[]")
# How many texts a condition with wildcards remembers having matched or not.
_SEEN_TEXTS = 1024


def _reader(path: str) -> Callable[[Event], object]:
    from .model import event_field

    if path == "service":
        read: Callable[[Event], object] = attrgetter("service")  # the property, with no frame
        return read
    return lambda event: event_field(event, path)


def _condition(condition: Condition) -> Callable[[Event], bool]:
    """`condition.holds`, compiled."""
    read = _reader(condition.path)
    texts = [a for a in condition.allowed if isinstance(a, str)]
    exact = frozenset(a for a in texts if not _GLOB.search(a))
    globs = tuple(re.compile(translate(a)).match for a in texts if _GLOB.search(a))
    others = tuple(a for a in condition.allowed if not isinstance(a, str))
    if not globs and not others:
        # The common case (a service or type named exactly): a set lookup, no loops.
        def holds_exact(event: Event) -> bool:
            value = read(event)
            if isinstance(value, str):
                return (value if type(value) is str else str.__str__(value)) in exact
            return False

        return holds_exact

    seen: dict[str, bool] = {}

    def holds(event: Event) -> bool:
        value = read(event)
        if isinstance(value, str):
            # A text matches text (as `fnmatchcase`); no value of another kind equals it.
            # A subclass of str (a `StrEnum`) is read as its text, as `fnmatchcase` reads it.
            text = value if type(value) is str else str.__str__(value)
            if text in exact:
                return True
            # Events name few distinct services: each text goes through the globs once.
            found = seen.get(text)
            if found is None:
                if len(seen) >= _SEEN_TEXTS:
                    seen.clear()  # bounded, whatever a feed sends
                found = seen[text] = any(match(text) for match in globs)
            return found
        for expected in others:
            if isinstance(expected, bool) or isinstance(value, bool):
                if value is expected:
                    return True
            elif value == expected:
                return True
        return False

    return holds


def compile_conditions(conditions: tuple[Condition, ...]) -> Match:
    """All of `conditions`, as one function (`None` for none)."""
    if not conditions:
        return None
    if len(conditions) == 1:
        return _condition(conditions[0])
    each = tuple(_condition(c) for c in conditions)

    def holds_all(event: Event) -> bool:
        for holds in each:  # noqa: SIM110 (a loop, not a generator per call)
            if not holds(event):
                return False
        return True

    return holds_all


def _by_type(triggers: tuple[Trigger, ...]) -> Mapping[EventType, tuple[Match, ...]]:
    found: dict[EventType, list[Match]] = {}
    for trigger in triggers:
        found.setdefault(trigger.event, []).append(compile_conditions(trigger.conditions))
    return {event: tuple(matches) for event, matches in found.items()}


def matches_any(matches: tuple[Match, ...], event: Event) -> bool:
    """Whether `event` meets one of `matches` (all of its type already)."""
    # A loop, not `any()` over a generator: this runs for every trigger looked at.
    for match in matches:  # noqa: SIM110
        if match is None or match(event):
            return True
    return False


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """A stage's entry trigger: the stage's position, and where it may come from."""

    position: int
    stage: Stage
    match: Match
    sources: tuple[str, ...]
    anywhere: bool


@dataclass(slots=True)
class SpecPlan:
    """A message of the flow, its triggers by event type, and its persona variants as met."""

    spec: MessageSpec
    stage: Stage
    conditions: Match
    send_on: Mapping[EventType, tuple[Match, ...]]
    cancel_on: Mapping[EventType, tuple[Match, ...]]
    unless: Mapping[EventType, tuple[Match, ...]]
    _variants: dict[str | None, MessageSpec] = field(default_factory=dict)

    def for_persona(self, persona: str | None) -> MessageSpec:
        """`spec.for_persona(persona)`, made once per persona."""
        spec = self._variants.get(persona)
        if spec is None:
            spec = self._variants[persona] = self.spec.for_persona(persona)
        return spec


def waits_for_appointment(spec: MessageSpec) -> bool:
    """A reminder before the appointment, or a message that expires at its start."""
    timing, expiry = spec.timing, spec.expiry
    before_start = timing.anchor is Anchor.APPOINTMENT_START and timing.offset < timedelta(0)
    return before_start or (expiry is not None and expiry.anchor is Anchor.APPOINTMENT_START)


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """What the fold reads of a flow, by event type, in the flow's order."""

    starts: Mapping[EventType, tuple[Match, ...]]
    exits: Mapping[EventType, tuple[tuple[Match, str], ...]]
    entries: Mapping[EventType, tuple[EntryPlan, ...]]
    specs: Mapping[str, SpecPlan]
    # Per stage: its messages in order, and those sent on an event of each type.
    stage_specs: Mapping[str, tuple[SpecPlan, ...]]
    sends: Mapping[tuple[str, EventType], tuple[SpecPlan, ...]]
    cancelling_types: frozenset[EventType]

    @classmethod
    def of(cls, flow: Flow) -> FlowPlan:
        from .model import ANY_STAGE

        exits: dict[EventType, list[tuple[Match, str]]] = {}
        for exit_ in flow.exits:
            trigger = exit_.trigger
            exits.setdefault(trigger.event, []).append(
                (compile_conditions(trigger.conditions), exit_.outcome)
            )
        entries: dict[EventType, list[EntryPlan]] = {}
        for i, stage in enumerate(flow.stages):
            for trigger in stage.enter_on:
                sources = trigger.sources
                entries.setdefault(trigger.event, []).append(
                    EntryPlan(
                        i,
                        stage,
                        compile_conditions(trigger.conditions),
                        sources,
                        not sources or ANY_STAGE in sources,
                    )
                )
        ids = [spec.id for stage in flow.stages for spec in stage.messages]
        if len(set(ids)) != len(ids):
            # The fold finds a stage's messages by id: two with one id would mix.
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"flow {flow.id}: message ids used twice: {', '.join(twice)}")
        specs = {
            spec.id: SpecPlan(
                spec,
                stage,
                compile_conditions(spec.conditions),
                _by_type(spec.send_on),
                _by_type(spec.cancel_on),
                _by_type(spec.unless),
            )
            for stage in flow.stages
            for spec in stage.messages
        }
        stage_specs = {
            stage.id: tuple(specs[spec.id] for spec in stage.messages) for stage in flow.stages
        }
        sends = {
            (stage.id, event): tuple(p for p in plans if event in p.send_on)
            for stage, plans in ((s, stage_specs[s.id]) for s in flow.stages)
            for event in {t for p in plans for t in p.send_on}
        }
        return cls(
            starts=_by_type(flow.starts_on),
            exits={event: tuple(items) for event, items in exits.items()},
            entries={event: tuple(items) for event, items in entries.items()},
            specs=specs,
            stage_specs=stage_specs,
            sends=sends,
            cancelling_types=frozenset(
                t for p in specs.values() for t in (*p.cancel_on, *p.unless)
            ),
        )

    def starts_on(self, event: Event) -> bool:
        """Whether the flow starts an episode on `event` (`Flow.starts_on`)."""
        matches = self.starts.get(event.type)
        return matches is not None and matches_any(matches, event)

    def exit_outcome(self, event: Event) -> str | None:
        """The outcome of the first exit `event` matches, if any."""
        for match, outcome in self.exits.get(event.type, ()):
            if match is None or match(event):
                return outcome
        return None
