"""The event processor: a batch of events through the engine into the store.

Each batch is one transaction: the new journey states, the scheduled,
cancelled and expired messages, what is known of the patients (each
event's patient block merged in by `merge_patient`) and consent, the
processed-event records and the audit rows commit together or not at all.
An event already processed (same id) changes nothing. This is the per-event
boundary: an event the engine fails on is answered `rejected` with its error
type, logged, and the rest of the batch goes on. So is every event of a
patient whose stored journey does not read back (quarantined): it is not
processed until an operator repairs or removes that journey. The caller,
the intake (`orchestrator/runtime/intake.py`), keeps what was rejected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from ..actions import CancelMessage, Decision, ExpireMessage, ScheduleMessage
from ..clock import Clock
from ..event import Event, EventType
from ..flows.model import Flow
from ..insight.figures import PatientEvent
from ..insight.visits import visit_facts
from ..journey import Episode, Journey
from ..patient_merge import Stamp, merge_patient
from ..policies import consent_decisions, supersedes
from ..ports import EventResult, ImportHold, JourneyStore, JourneyUnit
from ..settle import DEFAULT_SETTLE_AFTER, settle
from ..versions import advance_versions
from .registry import FlowRegistry

__all__ = ["EventProcessor", "EventResult"]

log = logging.getLogger(__name__)


@dataclass
class EventProcessor:
    store: JourneyStore
    flows: FlowRegistry
    clock: Clock
    # How long after the processing clock a journey keeps events to re-fold (`settle`).
    settle_after: timedelta = DEFAULT_SETTLE_AFTER
    # Called when a journey is on a version this registry lacks (another process
    # published it since this one last looked): it takes the new registry up (`use`).
    missing_version: Callable[[], object] | None = None
    # One batch at a time in this process: two batches for one patient must not
    # both read the journey before either writes it. Reentrant: `missing_version`
    # swaps the registry from inside a batch.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Each flow version's intake requests (`_intake_requests`), with the flow they are of.
    _intake: dict[tuple[str, int], tuple[Flow, frozenset[str]]] = field(
        default_factory=dict, repr=False
    )

    def use(self, flows: FlowRegistry) -> None:
        """Run on `flows` from the next batch on (between batches: one registry per batch)."""
        with self._lock:
            self.flows = flows

    def process(
        self, events: Sequence[Event], *, hold: ImportHold | None = None
    ) -> list[EventResult]:
        """Apply a batch of events in one transaction; a result per event, in order.

        With `hold`, the batch belongs to an open import: the messages it
        schedules or updates wait for the import to close.
        """
        with self._lock:
            return self._process(events, hold)

    def _process(self, events: Sequence[Event], hold: ImportHold | None) -> list[EventResult]:
        now = self.clock.now()
        results: list[EventResult | None] = [None] * len(events)
        with self.store.unit(now, hold) as unit:
            patients = {e.patient.id for e in events}
            unit.lock_patients(patients)
            done = unit.processed(e.id for e in events)
            journeys = unit.journeys(patients)
            if self.missing_version is not None and any(
                (fid, version) not in self.flows.versions for _, fid, version in journeys
            ):
                self.missing_version()
            # The versions each (patient, flow) has a journey on, for the older-version lookup.
            versions: dict[tuple[str, str], set[int]] = {}
            for pid, fid, version in journeys:
                versions.setdefault((pid, fid), set()).add(version)
            known = unit.known_patients(patients)
            accepted: list[Event] = []
            settled: list[tuple[str, str, int, Episode]] = []
            # In the order they occurred, whatever order the batch lists them in: an
            # import's lines out of order still fold in their place, even those from
            # before a journey's horizon. Results stay in the batch's order.
            for index in sorted(range(len(events)), key=lambda i: events[i].sort_key()):
                event = events[index]
                if event.id in done:
                    results[index] = EventResult(event.id, "duplicate")
                    continue
                quarantined = unit.unreadable.get(event.patient.id)
                if quarantined is not None:
                    # Not marked processed: once an operator repairs the journey,
                    # the kept event can be sent again and is taken.
                    log.error(
                        "event.quarantined",
                        extra={"event_id": event.id, "error": quarantined.rsplit(" ", 1)[-1]},
                    )
                    problem = f"quarantined: the patient's {quarantined} does not read back"
                    results[index] = EventResult(event.id, "rejected", (problem,))
                    continue
                done.add(event.id)
                before = known.get(event.patient.id)
                merged = merge_patient(before, event.patient, Stamp(event.occurred_at, event.id))
                try:
                    # The engine times and addresses messages with everything known
                    # of the patient, not only what this event's block states.
                    decisions = self._decide(
                        journeys, versions, replace(event, patient=merged.patient), now
                    )
                except Exception as exc:  # noqa: BLE001 - the per-event boundary: keep it, log it, go on
                    log.error(
                        "event.failed",
                        extra={"event_id": event.id, "error": exc.__class__.__name__},
                    )
                    results[index] = EventResult(
                        event.id, "rejected", (f"engine failed: {exc.__class__.__name__}",)
                    )
                    continue
                if merged is not before:
                    known[event.patient.id] = merged
                    unit.save_patient(merged)
                notes = _beyond_horizon(journeys, event, decisions)
                self._record(unit, journeys, event, decisions, now, settled, settling=hold is None)
                for version, decision in decisions:
                    versions.setdefault((event.patient.id, decision.journey.flow_id), set()).add(
                        version
                    )
                unit.mark_processed(event)
                accepted.append(event)
                results[index] = EventResult(event.id, "accepted", notes=notes)
            self._keep_visits(unit, journeys, accepted, settled)
        return [r for r in results if r is not None]

    def _keep_visits(
        self,
        unit: JourneyUnit,
        journeys: dict[tuple[str, str, int], Journey],
        accepted: list[Event],
        settled: list[tuple[str, str, int, Episode]],
    ) -> None:
        """Rewrite the figures' stage visits of every patient the batch advanced.

        All of a patient's episodes on each flow, not only the journeys that
        changed: an event of a type a flow does not follow (a reply, an intake
        request) changes no journey of it but counts for its open episode.
        """
        patients = {e.patient.id for e in accepted}
        if not patients:
            return
        known = {t.value: t for t in EventType}
        events = [
            PatientEvent(event_id, patient_id, known[kind], at)
            for event_id, patient_id, kind, at in unit.event_times(patients)
            if kind in known
        ]
        events += [PatientEvent(e.id, e.patient.id, e.type, e.occurred_at) for e in accepted]
        by_patient: dict[str, list[PatientEvent]] = {}
        for event in events:
            by_patient.setdefault(event.patient_id, []).append(event)
        episodes: dict[tuple[str, str], list[tuple[int, Episode]]] = {}
        for (patient_id, flow_id, version), journey in journeys.items():
            if patient_id in patients:
                mine = episodes.setdefault((patient_id, flow_id), [])
                mine += [(version, e) for e in journey.episodes]
        for patient_id, flow_id, version, episode in settled:
            episodes.setdefault((patient_id, flow_id), []).append((version, episode))
        for (patient_id, flow_id), pairs in sorted(episodes.items()):
            flow = self.flows.current.get(flow_id)
            if flow is None:
                continue
            facts = visit_facts(flow, patient_id, pairs, by_patient.get(patient_id, ()))
            unit.save_visits([e.id for _, e in pairs], facts)

    def _decide(
        self,
        journeys: dict[tuple[str, str, int], Journey],
        versions: dict[tuple[str, str], set[int]],
        event: Event,
        now: datetime,
    ) -> list[tuple[int, Decision]]:
        """Advance every journey of the patient the event concerns (pure: no writes)."""
        decisions: list[tuple[int, Decision]] = []
        patient_id = event.patient.id
        for flow_id, flow in self.flows.current.items():
            if event.type not in flow.event_types:
                continue
            mine = {
                version: journeys[(patient_id, flow_id, version)]
                for version in versions.get((patient_id, flow_id), ())
            }
            older = partial(self.flows.version, flow_id)
            decisions += advance_versions(mine, event, flow, older, now)
        return decisions

    def _record(
        self,
        unit: JourneyUnit,
        journeys: dict[tuple[str, str, int], Journey],
        event: Event,
        decisions: list[tuple[int, Decision]],
        now: datetime,
        settled_out: list[tuple[str, str, int, Episode]],
        *,
        settling: bool,
    ) -> None:
        """Write what the event decided. With `settling` (not during an import:
        its batches may come in any order, and must fold in their place), each
        journey it changed is bounded first (`orchestrator.settle`)."""
        decided = consent_decisions(event)
        if decided:
            latest = unit.consent_times(event.patient.id)
            for recipient, consent in decided:
                if supersedes(consent, latest.get((recipient, consent.channel.value))):
                    unit.save_consent(event.patient.id, recipient, consent)
        for version, decision in decisions:
            journey = decision.journey
            key = (journey.patient_id, journey.flow_id, version)
            if journeys.get(key) is journey:
                continue
            if settling:
                flow = self.flows.version(journey.flow_id, version)
                settled = settle(journey, flow, now, self.settle_after)
                journey = settled.journey
                if settled.episodes:
                    unit.save_settled(
                        journey.patient_id, journey.flow_id, version, settled.episodes
                    )
                    settled_out += [
                        (journey.patient_id, journey.flow_id, version, e) for e in settled.episodes
                    ]
            journeys[key] = journey
            unit.save_journey(journey, version)
            intake = (
                self._intake_requests(self.flows.version(journey.flow_id, version))
                if decision.actions
                else frozenset()
            )
            for action in decision.actions:
                if isinstance(action, ScheduleMessage):
                    unit.schedule(action.message, event.id)
                    if action.message.message_id in intake:
                        unit.note_intake_requests([action.message.key])
                elif isinstance(action, CancelMessage):
                    unit.cancel(action.message, action.reason, event.id)
                elif isinstance(action, ExpireMessage):
                    unit.expire(action.message, action.reason, event.id)

    def _intake_requests(self, flow: Flow) -> frozenset[str]:
        """The messages of `flow` that ask for an intake (those an intake completion stops).

        Worked out once per flow version this processor runs, not once per decision.
        """
        known = self._intake.get((flow.id, flow.version))
        if known is not None and known[0] is flow:
            return known[1]
        found = frozenset(
            spec.id
            for _, spec in flow.specs.values()
            if any(t.event is EventType.INTAKE_COMPLETED for t in spec.unless)
        )
        self._intake[(flow.id, flow.version)] = (flow, found)
        return found


def _beyond_horizon(
    journeys: dict[tuple[str, str, int], Journey],
    event: Event,
    decisions: list[tuple[int, Decision]],
) -> tuple[str, ...]:
    """Say so when the event occurred before a journey's horizon (`orchestrator.settle`)."""
    for version, decision in decisions:
        before = journeys.get((event.patient.id, decision.journey.flow_id, version))
        horizon = before.horizon if before is not None else None
        # At the horizon's very instant too: the checkpoint keeps its time, not
        # which event came last at it, so a tie may be out of place.
        if horizon is not None and event.occurred_at <= horizon:
            log.warning("event.beyond_horizon", extra={"event_id": event.id})
            return (
                f"occurred before the journey's horizon ({horizon.isoformat()}): folded "
                "after every event before the horizon, not in its place among them",
            )
    return ()
