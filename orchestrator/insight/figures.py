"""A flow's measured figures, computed from rows: the funnel, the messages, the outcomes.

Pure: the inputs are the flow, its journeys (stage history per episode), the
audit's decision records and the patients' events (id, type, time); the
store or the simulator supplies them. The rules this file keeps:

1. The funnel counts stage *entries*: an episode that comes back to a stage
   (rebooked after a no-show) counts again. Each entry ends in exactly one
   way: it moved on (the episode entered another stage), dropped off (the
   episode was exited there: opted out, deceased), completed (a final
   stage), or is still there. So `entered = moved_on + dropped_off +
   completed + still_here`.
2. An event counts for the stage its episode was in when it happened,
   before any move it caused: a no-show counts for the booked stage it
   moved the patient out of. An event of a type the flow follows counts
   only for the episode that holds it; one of a type the flow does not
   follow (`intake.sent`, `message.replied`, a no-show in a flow without a
   no-show rule) counts for the patient's episode open at that time.
3. A message's figures count each scheduled instance once (by its key), in
   every state it reached: `sent` counts what went out, `delivered` what a
   provider then confirmed, suppression by reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from statistics import median

from ..decisions import DecisionRecord
from ..event import EventType
from ..flows.model import Flow
from ..journey import Episode, EpisodeStatus, Journey

__all__ = [
    "DailySends",
    "FigureFilter",
    "FlowFigures",
    "GroupOutcomes",
    "HoldoutFigures",
    "Hours",
    "MessageFigures",
    "PatientEvent",
    "Ratio",
    "StageFigures",
    "episode_personas",
    "flow_figures",
    "open_episode",
    "visit_at",
    "visit_ending",
]

ATTENDED = frozenset({EventType.APPOINTMENT_CHECKED_IN, EventType.APPOINTMENT_COMPLETED})


@dataclass(frozen=True, slots=True)
class FigureFilter:
    """Which episodes and records a flow's figures count (the console's filters).

    `persona` and `version` choose episodes and their audit records. The
    window (`since` inclusive, `until` exclusive) chooses the episodes that
    started in it for the funnel, and the audit records of the UTC days it
    touches for the message figures. `language` and `channel` choose audit
    records. `flow_figures` over journeys knows only `persona`.
    """

    persona: str | None = None
    version: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    language: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class PatientEvent:
    """What the figures need of an event: which, whose, what and when."""

    id: str
    patient_id: str
    type: EventType
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Ratio:
    """A rate with its counts, so nobody reads noise as a result."""

    numerator: int = 0
    denominator: int = 0

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True, slots=True)
class Hours:
    """A duration's median in hours over `count` cases."""

    count: int = 0
    median: float | None = None


@dataclass(frozen=True, slots=True)
class StageFigures:
    stage_id: str
    entered: int = 0
    moved_on: int = 0
    dropped_off: int = 0
    completed: int = 0
    still_here: int = 0
    # Of the entries where an intake was asked for, how many episodes completed it.
    intake_completion: Ratio = Ratio()
    # Of the visits here that ended attended or missed, how many were missed.
    no_show: Ratio = Ratio()
    # Of the entries where a message was sent, how many got a reply.
    confirmation_by_reply: Ratio = Ratio()
    # From a referral (received in this stage) to the booking that followed it.
    referral_to_booking: Hours = Hours()


@dataclass(frozen=True, slots=True)
class MessageFigures:
    stage_id: str
    message_id: str
    scheduled: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    suppressed: Mapping[str, int] = field(default_factory=dict)

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())


@dataclass(frozen=True, slots=True)
class GroupOutcomes:
    """Outcomes of one group of episodes (messaged, or held out)."""

    episodes: int = 0
    intake_completed: Ratio = Ratio()
    no_show: Ratio = Ratio()
    replied: Ratio = Ratio()
    moved_on: Ratio = Ratio()


@dataclass(frozen=True, slots=True)
class HoldoutFigures:
    stage_id: str
    message_id: str
    percent: float
    messaged: GroupOutcomes
    held_out: GroupOutcomes


@dataclass(frozen=True, slots=True)
class DailySends:
    day: date
    sent: int
    delivered: int


@dataclass(frozen=True, slots=True)
class FlowFigures:
    flow_id: str
    persona: str | None
    episodes: int
    patients: int
    stages: tuple[StageFigures, ...]
    messages: tuple[MessageFigures, ...]
    daily: tuple[DailySends, ...]
    suppression: Mapping[str, int]
    holdouts: tuple[HoldoutFigures, ...]
    # Measured moves between stages: (from, to) -> entries.
    transitions: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def stage(self, stage_id: str) -> StageFigures:
        return next(s for s in self.stages if s.stage_id == stage_id)

    def message(self, message_id: str) -> MessageFigures:
        return next(m for m in self.messages if m.message_id == message_id)


def episode_personas(flow: Flow, journeys: Iterable[Journey]) -> dict[str, str | None]:
    """Each episode's persona: the first the event that opened the episode matches."""
    return {
        episode.id: flow.persona_of(episode.events[0]) if episode.events else None
        for journey in journeys
        for episode in journey.episodes
    }


def flow_figures(
    flow: Flow,
    journeys: Iterable[Journey],
    records: Iterable[DecisionRecord],
    events: Iterable[PatientEvent] = (),
    *,
    persona: str | None = None,
) -> FlowFigures:
    """The measured figures of `flow`; with `persona`, only that persona's episodes."""
    journeys = [j for j in journeys if j.flow_id == flow.id]
    personas = episode_personas(flow, journeys)
    episodes = [
        (j.patient_id, e)
        for j in journeys
        for e in j.episodes
        if e.history and (persona is None or personas.get(e.id) == persona)
    ]
    wanted = {e.id for _, e in episodes}
    records = [r for r in records if r.flow == flow.id and r.episode in wanted]
    by_patient: dict[str, list[Episode]] = defaultdict(list)
    for patient_id, episode in episodes:
        by_patient[patient_id].append(episode)
    # Every event the episodes hold, and the patient's events of types the flow does
    # not follow, each once. An event of a followed type that no episode holds was
    # about something else (another care path's appointment): it does not count.
    attributed: dict[str, list[tuple[int, PatientEvent]]] = defaultdict(list)
    for patient_id, episode in episodes:
        for own in episode.events:
            visit = visit_at(episode, own.id, own.occurred_at)
            attributed[episode.id].append(
                (visit, PatientEvent(own.id, patient_id, own.type, own.occurred_at))
            )
    for other in events:
        if other.type in flow.event_types:
            continue
        owner = open_episode(by_patient.get(other.patient_id, ()), other.occurred_at)
        if owner is not None:
            visit = visit_at(owner, other.id, other.occurred_at)
            attributed[owner.id].append((visit, other))
    messages = _message_figures(flow, records)
    stages = _stage_figures(flow, episodes, attributed, records)
    return FlowFigures(
        flow_id=flow.id,
        persona=persona,
        episodes=len(episodes),
        patients=len(by_patient),
        stages=stages,
        messages=messages,
        daily=_daily(records),
        suppression=dict(
            sorted(Counter(r.reason or "" for r in records if r.status == "suppressed").items())
        ),
        holdouts=_holdouts(flow, episodes, attributed, records),
        transitions=dict(
            sorted(
                Counter(
                    (a.stage_id, b.stage_id)
                    for _, e in episodes
                    for a, b in zip(e.history, e.history[1:], strict=False)
                ).items()
            )
        ),
    )


# -- attribution -------------------------------------------------------------


def visit_at(episode: Episode, event_id: str, at: datetime) -> int:
    """The index of the stage visit an event counts for (rule 2)."""
    for i, visit in enumerate(episode.history):
        if visit.event_id == event_id:
            return max(i - 1, 0)
    index = 0
    for i, visit in enumerate(episode.history):
        if visit.entered_at <= at:
            index = i
    return index


def open_episode(episodes: Iterable[Episode], at: datetime) -> Episode | None:
    """The latest episode that had started by `at` and had not ended before it."""
    found = None
    for episode in episodes:
        open_then = episode.started_at <= at and (
            episode.ended_at is None or at <= episode.ended_at
        )
        if open_then and (found is None or episode.started_at >= found.started_at):
            found = episode
    return found


# -- the funnel and the outcomes per stage -------------------------------------


def _stage_figures(
    flow: Flow,
    episodes: list[tuple[str, Episode]],
    attributed: Mapping[str, list[tuple[int, PatientEvent]]],
    records: list[DecisionRecord],
) -> tuple[StageFigures, ...]:
    counts: dict[str, Counter[str]] = {s.id: Counter() for s in flow.stages}
    hours: dict[str, list[float]] = defaultdict(list)
    intake_specs = {
        spec.id
        for _, spec in flow.specs.values()
        if any(t.event is EventType.INTAKE_COMPLETED for t in spec.unless)
    }
    # Per episode: the stages where an intake nudge was scheduled, and where something was sent.
    scheduled_intake: dict[str, set[str]] = defaultdict(set)
    sent_in: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.status == "scheduled" and r.message in intake_specs:
            scheduled_intake[r.episode].add(r.stage)
        elif r.status == "sent":
            sent_in[r.episode].add(r.stage)
    final = {s.id for s in flow.stages if s.final}
    for _, episode in episodes:
        history = episode.history
        last = len(history) - 1
        for i, visit in enumerate(history):
            stage = counts.get(visit.stage_id)
            if stage is None:
                continue  # a stage of another version of the flow
            stage["entered"] += 1
            stage[visit_ending(episode, i == last, visit.stage_id in final)] += 1
        own = sorted(attributed.get(episode.id, ()), key=lambda item: item[1].occurred_at)
        intake_done = any(e.type is EventType.INTAKE_COMPLETED for _, e in own)
        # Per visit: missed or attended. Per stage: intake asked, replies.
        missed: set[int] = set()
        attended: set[int] = set()
        asked: set[str] = set()
        replied: set[str] = set()
        referral: datetime | None = None
        referral_stage = ""
        for index, event in own:
            stage_id = history[index].stage_id
            if event.type is EventType.APPOINTMENT_NO_SHOW:
                missed.add(index)
            elif event.type in ATTENDED:
                attended.add(index)
            elif event.type is EventType.INTAKE_SENT:
                asked.add(stage_id)
            elif event.type is EventType.MESSAGE_REPLIED:
                replied.add(stage_id)
            elif event.type is EventType.REFERRAL_RECEIVED and referral is None:
                referral, referral_stage = event.occurred_at, stage_id
            elif event.type is EventType.APPOINTMENT_BOOKED and referral is not None:
                hours[referral_stage].append((event.occurred_at - referral).total_seconds() / 3600)
                referral = None
        for index in missed | attended:
            ended = counts.get(history[index].stage_id)
            if ended is not None:
                ended["visits_ended"] += 1
                ended["missed"] += index in missed
        asked |= scheduled_intake.get(episode.id, set())
        for stage_id in asked:
            if stage_id in counts:
                counts[stage_id]["intake_asked"] += 1
                counts[stage_id]["intake_done"] += intake_done
        for stage_id in sent_in.get(episode.id, ()):
            if stage_id in counts:
                counts[stage_id]["messaged"] += 1
                counts[stage_id]["replied"] += stage_id in replied
    return tuple(
        StageFigures(
            stage_id=stage.id,
            entered=c["entered"],
            moved_on=c["moved_on"],
            dropped_off=c["dropped_off"],
            completed=c["completed"],
            still_here=c["still_here"],
            intake_completion=Ratio(c["intake_done"], c["intake_asked"]),
            no_show=Ratio(c["missed"], c["visits_ended"]),
            confirmation_by_reply=Ratio(c["replied"], c["messaged"]),
            referral_to_booking=Hours(
                len(hours[stage.id]), median(hours[stage.id]) if hours[stage.id] else None
            ),
        )
        for stage in flow.stages
        for c in [counts[stage.id]]
    )


def visit_ending(episode: Episode, last: bool, final: bool) -> str:
    """How a stage visit ended (rule 1). The last visit of a final stage completed the
    journey whatever happened to the episode after: a later opt-out or death notice
    exits the episode but does not undo a completed journey into a drop-off."""
    if not last:
        return "moved_on"
    if final or episode.status is EpisodeStatus.COMPLETED:
        return "completed"
    if episode.status is EpisodeStatus.EXITED:
        return "dropped_off"
    return "still_here"


# -- messages --------------------------------------------------------------------


def _message_figures(flow: Flow, records: list[DecisionRecord]) -> tuple[MessageFigures, ...]:
    states: dict[str, dict[str, str | None]] = defaultdict(dict)
    message_of: dict[str, str] = {}
    for r in records:
        message_of[r.key] = r.message
        # The last reason seen for each status (a suppression's reason is final).
        states[r.key][r.status] = r.reason
    tallies: dict[str, Counter[str]] = defaultdict(Counter)
    suppressed: dict[str, Counter[str]] = defaultdict(Counter)
    for key, seen in states.items():
        tally = tallies[message_of[key]]
        for status in ("scheduled", "sent", "delivered", "failed", "cancelled", "expired"):
            tally[status] += status in seen
        if "suppressed" in seen:
            suppressed[message_of[key]][seen["suppressed"] or ""] += 1
    return tuple(
        MessageFigures(
            stage_id=stage.id,
            message_id=spec.id,
            scheduled=tallies[spec.id]["scheduled"],
            sent=tallies[spec.id]["sent"],
            delivered=tallies[spec.id]["delivered"],
            failed=tallies[spec.id]["failed"],
            cancelled=tallies[spec.id]["cancelled"],
            expired=tallies[spec.id]["expired"],
            suppressed=dict(sorted(suppressed[spec.id].items())),
        )
        for stage in flow.stages
        for spec in stage.messages
    )


def _daily(records: list[DecisionRecord]) -> tuple[DailySends, ...]:
    sent: Counter[date] = Counter()
    delivered: Counter[date] = Counter()
    for r in records:
        if r.status == "sent":
            sent[r.at.date()] += 1
        elif r.status == "delivered":
            delivered[r.at.date()] += 1
    return tuple(DailySends(day, sent[day], delivered[day]) for day in sorted(sent | delivered))


# -- holdouts --------------------------------------------------------------------


def _holdouts(
    flow: Flow,
    episodes: list[tuple[str, Episode]],
    attributed: Mapping[str, list[tuple[int, PatientEvent]]],
    records: list[DecisionRecord],
) -> tuple[HoldoutFigures, ...]:
    by_id = {e.id: e for _, e in episodes}
    by_message: dict[str, list[DecisionRecord]] = defaultdict(list)
    for r in records:
        by_message[r.message].append(r)
    found = []
    for stage in flow.stages:
        for spec in stage.messages:
            if not spec.holdout:
                continue
            mine = [r for r in by_message.get(spec.id, ()) if r.recipient == "patient"]
            messaged = {r.episode for r in mine if r.status == "sent"}
            held = {r.episode for r in mine if r.status == "suppressed" and r.reason == "holdout"}
            found.append(
                HoldoutFigures(
                    stage.id,
                    spec.id,
                    spec.holdout,
                    _outcomes([by_id[e] for e in sorted(messaged)], stage.id, attributed),
                    _outcomes([by_id[e] for e in sorted(held)], stage.id, attributed),
                )
            )
    return tuple(found)


def _outcomes(
    episodes: list[Episode],
    stage_id: str,
    attributed: Mapping[str, list[tuple[int, PatientEvent]]],
) -> GroupOutcomes:
    n = len(episodes)
    intake = no_show = replied = moved = 0
    for episode in episodes:
        types = {e.type for _, e in attributed.get(episode.id, ())}
        intake += EventType.INTAKE_COMPLETED in types
        no_show += EventType.APPOINTMENT_NO_SHOW in types
        replied += EventType.MESSAGE_REPLIED in types
        stages = [v.stage_id for v in episode.history]
        moved += stage_id in stages and stages.index(stage_id) < len(stages) - 1
    return GroupOutcomes(n, Ratio(intake, n), Ratio(no_show, n), Ratio(replied, n), Ratio(moved, n))
