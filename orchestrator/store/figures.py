"""A flow's figures aggregated in SQL, from what is kept as events are processed.

The same `FlowFigures` as `insight.figures.flow_figures` computes from
journeys (the reference; a property test holds the two equal), without
reading a journey or scanning the audit: the funnel and the outcomes come
from the stage visits the processor keeps (`stage_visits`, `insight.visits`);
the message figures, daily sends and suppression reasons from the audit's
tallies (`message_tallies`) and replies per send from `sent_stages`, both kept
by a trigger on `audit_log` (migration 0011); intake requests from
`intake_requests` (the unit of work's); holdout groups read the audit rows of
their message only (by index). Every value
is a bound parameter, so no persona, stage or message id reaches the SQL text.

What is not exact: a referral's hours to booking keep the first pair per
stage visit (two referrals in one visit keep one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from statistics import median
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, select, union
from sqlalchemy.engine import Connection

from ..flows.model import Flow
from ..insight.figures import (
    DailySends,
    FigureFilter,
    FlowFigures,
    GroupOutcomes,
    HoldoutFigures,
    Hours,
    MessageFigures,
    Ratio,
    StageFigures,
)
from .tables import AuditRow, IntakeRequestRow, MessageTallyRow, SentStageRow, StageVisitRow

__all__ = ["flow_figures"]

V = StageVisitRow.__table__.c
A = AuditRow.__table__.c
T = MessageTallyRow.__table__.c
S = SentStageRow.__table__.c
R = IntakeRequestRow.__table__.c


def _n(flag: ColumnElement[Any]) -> ColumnElement[int]:
    """A boolean as 0 or 1, for summing."""
    return case((flag, 1), else_=0)


def flow_figures(c: Connection, flow: Flow, chosen: FigureFilter | None = None) -> FlowFigures:
    """The figures of `flow` over the episodes and records `chosen` selects."""
    chosen = chosen or FigureFilter()
    visits = [V.flow_id == flow.id]
    if chosen.persona is not None:
        visits.append(V.persona == chosen.persona)
    if chosen.version is not None:
        visits.append(V.flow_version == chosen.version)
    if chosen.since is not None:
        visits.append(V.started_at >= chosen.since)
    if chosen.until is not None:
        visits.append(V.started_at < chosen.until)
    # The audit rows of the flow (intake requests, holdouts); each query joins
    # them to the chosen episodes' first visits.
    records = [A.flow_id == flow.id]
    tallies = [T.flow_id == flow.id]
    if chosen.persona is not None:
        tallies.append(T.persona == chosen.persona)
    if chosen.version is not None:
        tallies.append(T.flow_version == chosen.version)
    if chosen.since is not None:
        tallies.append(T.day >= chosen.since.astimezone(UTC).date().isoformat())
    if chosen.until is not None:
        tallies.append(T.day < _day_after(chosen.until))
    if chosen.language is not None:
        tallies.append(T.language == chosen.language)
    if chosen.channel is not None:
        tallies.append(T.channel == chosen.channel)
    total_episodes, patients = c.execute(
        select(func.count(), func.count(func.distinct(V.patient_id))).where(*visits, V.visit == 0)
    ).one()
    # One pass over the visits for the funnel, the no-shows and the moves.
    tally = c.execute(
        select(
            V.stage_id,
            V.ending,
            V.next_stage_id,
            func.count(),
            func.sum(_n(V.missed)),
            func.sum(_n(V.missed | V.attended)),
        )
        .where(*visits)
        .group_by(V.stage_id, V.ending, V.next_stage_id)
    ).all()
    transitions: dict[tuple[str, str], int] = defaultdict(int)
    for stage_id, _, next_stage_id, n, _, _ in tally:
        if next_stage_id is not None:
            transitions[(stage_id, next_stage_id)] += int(n)
    return FlowFigures(
        flow_id=flow.id,
        persona=chosen.persona,
        episodes=int(total_episodes),
        patients=int(patients),
        stages=_stages(c, flow, visits, tally),
        messages=_messages(c, flow, tallies),
        daily=_daily(c, tallies),
        suppression={
            reason: int(n)
            for reason, n in c.execute(
                select(T.reason, func.sum(T.records))
                .where(*tallies, T.status == "suppressed")
                .group_by(T.reason)
                .order_by(T.reason)
            )
            if n
        },
        holdouts=_holdouts(c, flow, visits, records),
        transitions=dict(sorted(transitions.items())),
    )


def _stages(
    c: Connection,
    flow: Flow,
    visits: list[Any],
    tally: Sequence[Sequence[Any]],
) -> tuple[StageFigures, ...]:
    ids = [s.id for s in flow.stages]
    counts: dict[str, dict[str, int]] = {i: defaultdict(int) for i in ids}
    here = [*visits, V.stage_id.in_(ids)]
    for stage_id, ending, _, n, missed, ended in tally:
        stage = counts.get(stage_id)
        if stage is None:
            continue  # a stage of another version of the flow
        stage["entered"] += int(n)
        stage[ending] += int(n)
        stage["missed"] += int(missed or 0)
        stage["visits_ended"] += int(ended or 0)
    # Intake asked per (episode, stage): an intake request counted there, or an
    # intake nudge scheduled there; completed if the episode completed one.
    asked = union(
        select(V.episode_id, V.stage_id).where(*here, V.intake_sent),
        select(R.episode_id, R.stage_id).where(R.flow_id == flow.id, R.stage_id.in_(ids)),
    ).subquery()
    first = _first_visits(visits)
    for stage_id, n, done in c.execute(
        select(asked.c.stage_id, func.count(), func.sum(_n(first.c.episode_intake_done)))
        .join(first, first.c.episode_id == asked.c.episode_id)
        .group_by(asked.c.stage_id)
    ):
        counts[stage_id]["intake_asked"] = int(n)
        counts[stage_id]["intake_done"] = int(done or 0)
    # Replies per (episode, stage) where something was sent: the few replied
    # visits, joined to the sends.
    replied = select(V.episode_id, V.stage_id).where(*here, V.replied).distinct().subquery()
    sends = select(S.stage_id, func.count(), func.count(replied.c.episode_id))
    if len(visits) > 1:  # only the chosen episodes' sends (every episode has visits)
        sends = sends.join(first, first.c.episode_id == S.episode_id)
    for stage_id, n, yes in c.execute(
        sends.outerjoin(
            replied,
            (replied.c.episode_id == S.episode_id) & (replied.c.stage_id == S.stage_id),
        )
        .where(S.flow_id == flow.id, S.stage_id.in_(ids))
        .group_by(S.stage_id)
    ):
        counts[stage_id]["messaged"] = int(n)
        counts[stage_id]["replied"] = int(yes or 0)
    hours = _referral_hours(c, here)
    return tuple(
        StageFigures(
            stage_id=i,
            entered=s["entered"],
            moved_on=s["moved_on"],
            dropped_off=s["dropped_off"],
            completed=s["completed"],
            still_here=s["still_here"],
            intake_completion=Ratio(s["intake_done"], s["intake_asked"]),
            no_show=Ratio(s["missed"], s["visits_ended"]),
            confirmation_by_reply=Ratio(s["replied"], s["messaged"]),
            referral_to_booking=hours.get(i, Hours()),
        )
        for i in ids
        for s in [counts[i]]
    )


def _first_visits(visits: list[Any]) -> Any:
    """One row per chosen episode, with the episode's outcome flags."""
    return (
        select(
            V.episode_id,
            V.episode_intake_done,
            V.episode_no_show,
            V.episode_replied,
        )
        .where(*visits, V.visit == 0)
        .subquery()
    )


def _referral_hours(c: Connection, here: list[Any]) -> dict[str, Hours]:
    found = [*here, V.referral_hours.is_not(None)]
    if c.dialect.name == "postgresql":
        middle = func.percentile_cont(0.5).within_group(V.referral_hours)
        return {
            stage_id: Hours(int(n), float(m))
            for stage_id, n, m in c.execute(
                select(V.stage_id, func.count(), middle).where(*found).group_by(V.stage_id)
            )
        }
    values: dict[str, list[float]] = defaultdict(list)
    for stage_id, hours in c.execute(select(V.stage_id, V.referral_hours).where(*found)):
        values[stage_id].append(float(hours))
    return {stage_id: Hours(len(v), median(v)) for stage_id, v in values.items()}


def _messages(c: Connection, flow: Flow, tallies: list[Any]) -> tuple[MessageFigures, ...]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    suppressed: dict[str, dict[str, int]] = defaultdict(dict)
    for message_id, status, reason, n in c.execute(
        select(T.message_id, T.status, T.reason, func.sum(T["keys"]))
        .where(*tallies)
        .group_by(T.message_id, T.status, T.reason)
    ):
        if not n:
            continue
        if status == "suppressed":
            suppressed[message_id][reason] = int(n)
        else:
            counts[message_id][status] += int(n)
    return tuple(
        MessageFigures(
            stage_id=stage.id,
            message_id=spec.id,
            scheduled=t["scheduled"],
            sent=t["sent"],
            delivered=t["delivered"],
            failed=t["failed"],
            cancelled=t["cancelled"],
            expired=t["expired"],
            suppressed=dict(sorted(suppressed[spec.id].items())),
        )
        for stage in flow.stages
        for spec in stage.messages
        for t in [counts[spec.id]]
    )


def _daily(c: Connection, tallies: list[Any]) -> tuple[DailySends, ...]:
    by_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, status, n in c.execute(
        select(T.day, T.status, func.sum(T.records))
        .where(*tallies, T.status.in_(("sent", "delivered")))
        .group_by(T.day, T.status)
    ):
        by_day[day][status] += int(n)
    return tuple(
        DailySends(date.fromisoformat(d), by_day[d]["sent"], by_day[d]["delivered"])
        for d in sorted(by_day)
        if by_day[d]["sent"] or by_day[d]["delivered"]
    )


def _day_after(instant: datetime) -> str:
    """The first day a window ending at `instant` (exclusive) leaves out whole."""
    at = instant.astimezone(UTC)
    day = at.date() if at.time() == time(0) else at.date() + timedelta(days=1)
    return day.isoformat()


def _holdouts(
    c: Connection, flow: Flow, visits: list[Any], records: list[Any]
) -> tuple[HoldoutFigures, ...]:
    first = _first_visits(visits)
    found = []
    for stage in flow.stages:
        for spec in stage.messages:
            if not spec.holdout:
                continue
            groups = {}
            for status, reason in (("sent", None), ("suppressed", "holdout")):
                mine = [*records, A.message_id == spec.id, A.recipient == "patient"]
                mine.append(A.status == status)
                if reason is not None:
                    mine.append(A.reason == reason)
                group = select(A.episode_id).where(*mine).distinct().subquery()
                moved = exists().where(
                    V.episode_id == group.c.episode_id,
                    V.stage_id == stage.id,
                    V.ending == "moved_on",
                )
                n, intake, no_show, replied, moved_on = c.execute(
                    select(
                        func.count(),
                        func.sum(_n(first.c.episode_intake_done)),
                        func.sum(_n(first.c.episode_no_show)),
                        func.sum(_n(first.c.episode_replied)),
                        func.sum(_n(moved)),
                    ).select_from(group.join(first, first.c.episode_id == group.c.episode_id))
                ).one()
                n = int(n)
                groups[status] = GroupOutcomes(
                    n,
                    Ratio(int(intake or 0), n),
                    Ratio(int(no_show or 0), n),
                    Ratio(int(replied or 0), n),
                    Ratio(int(moved_on or 0), n),
                )
            found.append(
                HoldoutFigures(
                    stage.id, spec.id, spec.holdout, groups["sent"], groups["suppressed"]
                )
            )
    return tuple(found)
