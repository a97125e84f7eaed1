"""The simulator: the engine and the send-time policies on a virtual clock.

Events arrive in the order given; before each, the clock moves to the time
it occurred and every message due by then is put through the gate at its
due instant. Nothing is sent: each decision becomes a `DecisionRecord`.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from .actions import CancelMessage, ExpireMessage, ScheduleMessage
from .clock import VirtualClock
from .decisions import DecisionRecord, record
from .engine import advance, route
from .event import Channel, Event
from .flows.model import Flow
from .journey import Journey, ScheduledMessage
from .message_status import MessageStatus
from .patient_merge import KnownPatient, Stamp, merge_patient
from .policies import (
    DEFAULT_STALE_AFTER,
    ConsentRecord,
    Defer,
    Expire,
    Send,
    SendContext,
    Suppress,
    consent_decisions,
    decide,
    supersedes,
)
from .recipients import choose_language, contact_for

__all__ = ["Simulator", "simulate"]

# A message deferred this many times in a row is expired: a guard, not a rule
# (validation rejects windows that can never open).
_MAX_DEFERRALS = 8


class Simulator:
    """Runs events through the engine and the gate; sends nothing."""

    def __init__(
        self,
        flows: Mapping[str, Flow],
        clock: VirtualClock,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        self.flows = flows
        self.clock = clock
        self.stale_after = stale_after
        self.journeys: dict[tuple[str, str], Journey] = {}
        self._patients: dict[str, KnownPatient] = {}
        self._consent: dict[tuple[str, str], dict[Channel, ConsentRecord]] = defaultdict(dict)
        self._sent: dict[tuple[str, str], dict[Channel, list[datetime]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._pending: dict[str, ScheduledMessage] = {}
        self._done: set[str] = set()
        self._deferrals: dict[str, int] = defaultdict(int)
        # A deferral is the gate's, not the engine's: an engine update of the
        # message (a new expiry) must not pull it back before its deferral.
        self._not_before: dict[str, datetime] = {}
        self._queue: list[tuple[datetime, int, str]] = []
        self._seq = 0

    def feed(self, event: Event) -> Iterator[DecisionRecord]:
        """Dispatch what fell due before the event, move the clock to it, then apply it.

        A message due at the very instant of the event waits for it: what the
        event says (a cancellation) is known before that message goes out.
        """
        yield from self._dispatch_due(lambda due: due < event.occurred_at)
        self.clock.move_to(event.occurred_at)
        now = self.clock.now()
        event = self._remember(event)
        for flow in route(event, self.flows.values()):
            key = (event.patient.id, flow.id)
            journey = self.journeys.get(key) or Journey.start(event.patient.id, flow.id)
            decision = advance(journey, event, flow, now)
            self.journeys[key] = decision.journey
            for action in decision.actions:
                if isinstance(action, ScheduleMessage):
                    if action.message.key in self._done:
                        continue  # already decided; an update cannot call it back
                    updated = action.message.key in self._pending
                    yield self._schedule(action.message, now, "updated" if updated else None)
                elif isinstance(action, CancelMessage):
                    if self._pending.pop(action.message.key, None) is not None:
                        self._done.add(action.message.key)
                        yield self._record(
                            action.message, now, MessageStatus.CANCELLED, action.reason
                        )
                elif isinstance(action, ExpireMessage):
                    self._done.add(action.message.key)
                    yield self._record(action.message, now, MessageStatus.EXPIRED, action.reason)

    def run_until(self, until: datetime | None) -> Iterator[DecisionRecord]:
        """Dispatch, in due order, every message due at or before `until` (all, if None)."""
        yield from self._dispatch_due(lambda due: until is None or due <= until)
        if until is not None:
            self.clock.move_to(until)

    def _dispatch_due(self, is_due: Callable[[datetime], bool]) -> Iterator[DecisionRecord]:
        while self._queue and is_due(self._queue[0][0]):
            due, _, key = heapq.heappop(self._queue)
            message = self._pending.get(key)
            if message is None or self._due(message) != due:
                continue  # cancelled, or rescheduled under a later heap entry
            self.clock.move_to(due)
            yield from self._dispatch(message)

    def _dispatch(self, message: ScheduledMessage) -> Iterator[DecisionRecord]:
        now = self.clock.now()
        flow = self.flows[message.flow_id]
        seen = self._patients.get(message.recipient.patient_id)
        contact = contact_for(seen.patient, message.recipient) if seen else None
        who = (message.recipient.patient_id, str(message.recipient))
        context = SendContext(contact, self._consent[who], self._sent[who])
        verdict = decide(message, flow, context, now, stale_after=self.stale_after)
        if isinstance(verdict, Defer):
            self._deferrals[message.key] += 1
            if self._deferrals[message.key] > _MAX_DEFERRALS:
                verdict = Expire("never_allowed")
            else:
                self._not_before[message.key] = verdict.until
                yield self._schedule(message, now, f"deferred:{verdict.reason}")
                return
        del self._pending[message.key]
        self._done.add(message.key)
        if isinstance(verdict, Send):
            self._sent[who][verdict.channel].append(now)
            reason = "language_fallback" if verdict.language_fallback else None
            yield self._record(
                message, now, MessageStatus.SENT, reason, verdict.channel.value, verdict.language
            )
        elif isinstance(verdict, Suppress):
            yield self._record(message, now, MessageStatus.SUPPRESSED, verdict.reason)
        else:
            yield self._record(message, now, MessageStatus.EXPIRED, verdict.reason)

    def _schedule(
        self, message: ScheduledMessage, now: datetime, reason: str | None = None
    ) -> DecisionRecord:
        self._pending[message.key] = message
        self._seq += 1
        due = self._due(message)
        heapq.heappush(self._queue, (due, self._seq, message.key))
        return self._record(replace(message, due_at=due), now, MessageStatus.SCHEDULED, reason)

    def _due(self, message: ScheduledMessage) -> datetime:
        deferred = self._not_before.get(message.key)
        return max(message.due_at, deferred) if deferred else message.due_at

    def _remember(self, event: Event) -> Event:
        """Take in what the event says; return it with everything known of its patient."""
        patient_id = event.patient.id
        known = merge_patient(
            self._patients.get(patient_id), event.patient, Stamp(event.occurred_at, event.id)
        )
        self._patients[patient_id] = known
        for recipient, consent in consent_decisions(event):
            book = self._consent[(patient_id, recipient)]
            previous = book.get(consent.channel)
            if supersedes(consent, previous.at if previous else None):
                book[consent.channel] = consent
        return replace(event, patient=known.patient)

    def _record(
        self,
        message: ScheduledMessage,
        now: datetime,
        status: MessageStatus,
        reason: str | None,
        channel: str | None = None,
        language: str | None = None,
    ) -> DecisionRecord:
        if language is None:
            seen = self._patients.get(message.recipient.patient_id)
            contact = contact_for(seen.patient, message.recipient) if seen else None
            if contact is not None:
                language = choose_language(contact.language, self.flows[message.flow_id])[0]
        return record(message, now, status, reason, channel=channel, language=language)


def simulate(
    events: Iterable[Event],
    flows: Mapping[str, Flow],
    until: datetime | None = None,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> Iterator[DecisionRecord]:
    """Run a whole stream; the clock starts at the first event."""
    simulator: Simulator | None = None
    for event in events:
        if simulator is None:
            clock = VirtualClock(event.occurred_at)
            simulator = Simulator(flows, clock, stale_after=stale_after)
        if until is not None and event.occurred_at > until:
            break
        yield from simulator.feed(event)
    if simulator is not None:
        yield from simulator.run_until(until)
