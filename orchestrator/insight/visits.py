"""One patient's stage visits on one flow, as the figures count them (`VisitFacts`).

Pure: the processor computes these for each patient a batch touched, from
their journeys and processed events, and the store keeps them
(`stage_visits`), so a flow's figures are aggregated in SQL. The rules are
`insight.figures`' own (the same attribution helpers), and a property test
holds the SQL figures equal to `flow_figures` over the journeys.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from ..event import EventType
from ..flows.model import Flow
from ..journey import Episode
from ..visit_facts import VisitFacts
from .figures import ATTENDED, PatientEvent, open_episode, visit_at, visit_ending

__all__ = ["visit_facts"]


def visit_facts(
    flow: Flow,
    patient_id: str,
    episodes: Sequence[tuple[int, Episode]],
    events: Iterable[PatientEvent] = (),
) -> list[VisitFacts]:
    """The facts of every visit of these (version, episode) pairs of one patient on `flow`.

    `events` are the patient's processed events: those of a type the flow does
    not follow count for the episode open when they occurred (rule 2).
    """
    mine = [(version, e) for version, e in episodes if e.history]
    attributed: dict[str, list[tuple[int, EventType, datetime]]] = defaultdict(list)
    for _, episode in mine:
        for own in episode.events:
            index = visit_at(episode, own.id, own.occurred_at)
            attributed[episode.id].append((index, own.type, own.occurred_at))
    open_ones = [e for _, e in mine]
    for other in events:
        if other.patient_id != patient_id or other.type in flow.event_types:
            continue
        owner = open_episode(open_ones, other.occurred_at)
        if owner is not None:
            index = visit_at(owner, other.id, other.occurred_at)
            attributed[owner.id].append((index, other.type, other.occurred_at))
    found: list[VisitFacts] = []
    for version, episode in mine:
        found += _episode_facts(flow, patient_id, version, episode, attributed[episode.id])
    return found


def _episode_facts(
    flow: Flow,
    patient_id: str,
    version: int,
    episode: Episode,
    attributed: list[tuple[int, EventType, datetime]],
) -> list[VisitFacts]:
    own = sorted(attributed, key=lambda item: item[2])
    types = {kind for _, kind, _ in own}
    missed: set[int] = set()
    attended: set[int] = set()
    asked: set[int] = set()
    replied: set[int] = set()
    hours: dict[int, float] = {}
    referral: tuple[int, datetime] | None = None
    for index, kind, at in own:
        if kind is EventType.APPOINTMENT_NO_SHOW:
            missed.add(index)
        elif kind in ATTENDED:
            attended.add(index)
        elif kind is EventType.INTAKE_SENT:
            asked.add(index)
        elif kind is EventType.MESSAGE_REPLIED:
            replied.add(index)
        elif kind is EventType.REFERRAL_RECEIVED and referral is None:
            referral = (index, at)
        elif kind is EventType.APPOINTMENT_BOOKED and referral is not None:
            hours.setdefault(referral[0], (at - referral[1]).total_seconds() / 3600)
            referral = None
    history = episode.history
    final = {s.id for s in flow.stages if s.final}
    persona = flow.persona_of(episode.events[0]) if episode.events else None
    last = len(history) - 1
    return [
        VisitFacts(
            episode_id=episode.id,
            visit=i,
            patient_id=patient_id,
            flow_id=flow.id,
            flow_version=version,
            stage_id=visit.stage_id,
            entered_at=visit.entered_at,
            event_id=visit.event_id,
            persona=persona,
            started_at=episode.started_at,
            ending=visit_ending(episode, i == last, visit.stage_id in final),
            next_stage_id=history[i + 1].stage_id if i < last else None,
            missed=i in missed,
            attended=i in attended,
            intake_sent=i in asked,
            replied=i in replied,
            referral_hours=hours.get(i),
            episode_intake_done=EventType.INTAKE_COMPLETED in types,
            episode_no_show=EventType.APPOINTMENT_NO_SHOW in types,
            episode_replied=EventType.MESSAGE_REPLIED in types,
        )
        for i, visit in enumerate(history)
    ]
