"""A flow's figures aggregated in SQL: GROUP BYs over `stage_visits`, the audit and nothing else.

The same `FlowFigures` as `insight.figures.flow_figures` computes from
journeys (the reference; a property test holds the two equal), without
reading a journey: the funnel, the outcomes and the holdout groups come from
the stage visits the processor keeps (`insight.visits`), the message figures,
daily sends and suppression reasons from the audit. Every value is a bound
parameter, so no persona, stage or message id reaches the SQL text.

What is not exact: a referral's hours to booking keep the first pair per
stage visit (two referrals in one visit keep one).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from statistics import median
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, select, union
from sqlalchemy.engine import Connection

from ..event import EventType
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
from .tables import AuditRow, StageVisitRow

__all__ = ["flow_figures"]

V = StageVisitRow.__table__.c
A = AuditRow.__table__.c
_STATUSES = ("scheduled", "sent", "delivered", "failed", "cancelled", "expired")


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
    episodes = select(V.episode_id).where(*visits, V.visit == 0)
    records = [A.flow_id == flow.id, A.episode_id.in_(episodes)]
    if chosen.language is not None:
        records.append(A.language == chosen.language)
    if chosen.channel is not None:
        records.append(A.channel == chosen.channel)
    total_episodes, patients = c.execute(
        select(func.count(), func.count(func.distinct(V.patient_id))).where(*visits, V.visit == 0)
    ).one()
    return FlowFigures(
        flow_id=flow.id,
        persona=chosen.persona,
        episodes=int(total_episodes),
        patients=int(patients),
        stages=_stages(c, flow, visits, records),
        messages=_messages(c, flow, records),
        daily=_daily(c, records),
        suppression={
            reason or "": int(n)
            for reason, n in c.execute(
                select(A.reason, func.count())
                .where(*records, A.status == "suppressed")
                .group_by(A.reason)
                .order_by(A.reason)
            )
        },
        holdouts=_holdouts(c, flow, visits, records),
        transitions={
            (a, b): int(n)
            for a, b, n in c.execute(
                select(V.stage_id, V.next_stage_id, func.count())
                .where(*visits, V.next_stage_id.is_not(None))
                .group_by(V.stage_id, V.next_stage_id)
                .order_by(V.stage_id, V.next_stage_id)
            )
        },
    )


def _stages(
    c: Connection, flow: Flow, visits: list[Any], records: list[Any]
) -> tuple[StageFigures, ...]:
    ids = [s.id for s in flow.stages]
    counts: dict[str, dict[str, int]] = {i: defaultdict(int) for i in ids}
    here = [*visits, V.stage_id.in_(ids)]
    for stage_id, ending, n, missed, ended in c.execute(
        select(
            V.stage_id,
            V.ending,
            func.count(),
            func.sum(_n(V.missed)),
            func.sum(_n(V.missed | V.attended)),
        )
        .where(*here)
        .group_by(V.stage_id, V.ending)
    ):
        stage = counts[stage_id]
        stage["entered"] += int(n)
        stage[ending] += int(n)
        stage["missed"] += int(missed or 0)
        stage["visits_ended"] += int(ended or 0)
    # Intake asked per (episode, stage): an intake request counted there, or an
    # intake nudge scheduled there; completed if the episode completed one.
    intake_specs = sorted(
        spec.id
        for _, spec in flow.specs.values()
        if any(t.event is EventType.INTAKE_COMPLETED for t in spec.unless)
    )
    asked = union(
        select(V.episode_id, V.stage_id).where(*here, V.intake_sent),
        select(A.episode_id, A.stage_id).where(
            *records, A.status == "scheduled", A.message_id.in_(intake_specs), A.stage_id.in_(ids)
        ),
    ).subquery()
    first = _first_visits(visits)
    for stage_id, n, done in c.execute(
        select(asked.c.stage_id, func.count(), func.sum(_n(first.c.episode_intake_done)))
        .join(first, first.c.episode_id == asked.c.episode_id)
        .group_by(asked.c.stage_id)
    ):
        counts[stage_id]["intake_asked"] = int(n)
        counts[stage_id]["intake_done"] = int(done or 0)
    # Replies per (episode, stage) where something was sent.
    sent = (
        select(A.episode_id, A.stage_id)
        .where(*records, A.status == "sent", A.stage_id.in_(ids))
        .distinct()
        .subquery()
    )
    replied = exists().where(
        V.episode_id == sent.c.episode_id, V.stage_id == sent.c.stage_id, V.replied
    )
    for stage_id, n, yes in c.execute(
        select(sent.c.stage_id, func.count(), func.sum(_n(replied))).group_by(sent.c.stage_id)
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


def _messages(c: Connection, flow: Flow, records: list[Any]) -> tuple[MessageFigures, ...]:
    tallies: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for message_id, status, n in c.execute(
        select(A.message_id, A.status, func.count(func.distinct(A.key)))
        .where(*records, A.status.in_(_STATUSES))
        .group_by(A.message_id, A.status)
    ):
        tallies[message_id][status] = int(n)
    # A suppressed message counts under the reason of its last suppression record.
    last = (
        select(func.max(A.id)).where(*records, A.status == "suppressed").group_by(A.key)
    ).scalar_subquery()
    suppressed: dict[str, dict[str, int]] = defaultdict(dict)
    for message_id, reason, n in c.execute(
        select(A.message_id, A.reason, func.count())
        .where(A.id.in_(last))
        .group_by(A.message_id, A.reason)
    ):
        by_reason = suppressed[message_id]
        by_reason[reason or ""] = by_reason.get(reason or "", 0) + int(n)
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
        for t in [tallies[spec.id]]
    )


def _daily(c: Connection, records: list[Any]) -> tuple[DailySends, ...]:
    if c.dialect.name == "postgresql":
        day: ColumnElement[Any] = func.date(func.timezone("UTC", A.at))
    else:
        day = func.date(A.at)
    by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for when, status, n in c.execute(
        select(day, A.status, func.count())
        .where(*records, A.status.in_(("sent", "delivered")))
        .group_by(day, A.status)
    ):
        key = when if isinstance(when, date) else date.fromisoformat(str(when))
        by_day[key][status] += int(n)
    return tuple(DailySends(d, by_day[d]["sent"], by_day[d]["delivered"]) for d in sorted(by_day))


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
