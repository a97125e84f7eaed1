"""What a draft would have done: real history replayed under the running flows and the draft.

The store keeps each processed event's canonical body (`EventHistory`), so
the last N days can be played again through the simulator (the runtime's
own processor and dispatcher on a virtual clock, `orchestrator.simulate`):
once with the flows that run, once with the draft, in lockstep over one
pass of the history, which is read in chunks and never held whole. The two
runs' decisions are diffed by `insight.compare`: messages moved, added,
removed and suppressed, per stage.

Both runs start empty at the first event of the window: a journey that
began before it starts at its first event inside it, in both runs alike, so
what differs is the draft. The clock runs on to `until` (now, at the
store's clock): what falls due by then is dispatched to the sandbox, what
falls due later stays scheduled, and a draft that moves it still shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from .clock import Clock, SystemClock, VirtualClock
from .decisions import DecisionRecord
from .event import Event, EventType
from .flows.model import Flow
from .insight.compare import Comparison, compare
from .policies import DEFAULT_STALE_AFTER
from .ports import EventHistory
from .runtime.pacing import PacingPlan
from .settle import DEFAULT_SETTLE_AFTER
from .simulate import Simulator
from .templates import TemplateSet

__all__ = ["draft_vs_running", "replayed_types", "what_if"]

# Not read by any flow, yet they change what is sent: a STOP suppresses every flow's messages.
_ALWAYS_REPLAYED = frozenset({EventType.CONSENT_OPTED_OUT, EventType.CONSENT_OPTED_IN})


def replayed_types(*flow_sets: Mapping[str, Flow]) -> frozenset[EventType]:
    """The event types that can change a decision under any of these flow sets."""
    types = set(_ALWAYS_REPLAYED)
    for flows in flow_sets:
        for flow in flows.values():
            types |= flow.event_types
    return frozenset(types)


def what_if(
    history: Iterable[Event],
    running: Mapping[str, Flow],
    draft: Mapping[str, Flow],
    templates: TemplateSet,
    *,
    settle_after: timedelta = DEFAULT_SETTLE_AFTER,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    pacing: PacingPlan | None = None,
    until: datetime | None = None,
    on_played: Callable[[Event], None] | None = None,
) -> Comparison:
    """The difference the draft makes to `history`, played in the order given (fold order).

    Events after `until` are not played; messages due by `until` are
    dispatched (all of them, when `until` is None). `on_played` is called after
    each event is played under both (a progress bar's hook).
    """
    events = iter(history)
    first = next(events, None)
    if first is None:
        return Comparison((), 0)
    start = first.occurred_at
    before: list[DecisionRecord] = []
    after: list[DecisionRecord] = []
    with (
        Simulator(
            running,
            VirtualClock(start),
            templates,
            stale_after=stale_after,
            settle_after=settle_after,
            pacing=pacing,
        ) as old,
        Simulator(
            draft,
            VirtualClock(start),
            templates,
            stale_after=stale_after,
            settle_after=settle_after,
            pacing=pacing,
        ) as new,
    ):
        event: Event | None = first
        while event is not None:
            if until is not None and event.occurred_at > until:
                break
            before += old.feed(event)
            after += new.feed(event)
            if on_played is not None:
                on_played(event)
            event = next(events, None)
        before += old.run_until(until)
        after += new.run_until(until)
    return compare(before, after)


def draft_vs_running(
    store: EventHistory,
    running: Mapping[str, Flow],
    draft: Mapping[str, Flow],
    templates: TemplateSet,
    days: int,
    *,
    clock: Clock | None = None,
    settle_after: timedelta = DEFAULT_SETTLE_AFTER,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    pacing: PacingPlan | None = None,
    on_played: Callable[[Event], None] | None = None,
) -> Comparison:
    """The draft against the running flows over the store's last `days` days, up to now.

    `draft` holds the flows being changed: each replaces the running flow of
    its id, and the other running flows run in both plays alike (a patient
    on two care paths shares caps and consent across them). The result is
    JSON-ready through `Comparison.as_json()`.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    now = (clock or SystemClock()).now()
    drafted = {**running, **draft}
    history = store.history(now - timedelta(days=days), now, replayed_types(running, drafted))
    return what_if(
        history,
        running,
        drafted,
        templates,
        settle_after=settle_after,
        stale_after=stale_after,
        pacing=pacing,
        until=now,
        on_played=on_played,
    )
