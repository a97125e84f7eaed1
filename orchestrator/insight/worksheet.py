"""The journey-map worksheet of a flow: Markdown, CSV and a Mermaid stage diagram.

One row per stage, in journey-map order (awareness, consideration, access,
diagnosis and planning, treatment, follow-up; a category the flow has no
stage in gets a row that says so, so the gap shows). Each row holds the
flow file's facts (touchpoints, channels, patient questions, messages and
when, success metric, as-is notes, to-be ideas) and, given figures, the
measured ones beside them. Pure: text in, text out.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..flows.model import Flow, MessageSpec, Stage, StageCategory
from .figures import FlowFigures, MessageFigures, Ratio, StageFigures
from .privacy import HIDDEN, complementary, rate_hidden

__all__ = [
    "CATEGORY_TITLES",
    "CSV_COLUMNS",
    "FUNNEL",
    "SUPPRESSION_REASONS",
    "declared_moves",
    "funnel_texts",
    "mermaid",
    "message_counts",
    "ratio_text",
    "read_csv",
    "to_csv",
    "to_markdown",
    "when_text",
]

CATEGORY_TITLES = {
    StageCategory.AWARENESS: "Awareness",
    StageCategory.CONSIDERATION: "Consideration",
    StageCategory.ACCESS: "Access",
    StageCategory.DIAGNOSIS_PLANNING: "Diagnosis and planning",
    StageCategory.TREATMENT: "Treatment",
    StageCategory.FOLLOW_UP: "Follow-up",
}

# The reasons the gate and the dispatcher suppress a message for (docs/architecture.md):
# one numeric CSV column each, `suppressed_<reason>`, and `suppressed_other` for any
# reason not listed, so that a spreadsheet sums them and `suppressed` is their total.
SUPPRESSION_REASONS = (
    "holdout",
    "consent",
    "consent:provider_opt_out",
    "frequency_cap",
    "no_contact_point",
    "no_recipient",
)
_SUPPRESSED_COLUMNS = (
    *(f"suppressed_{r.replace(':', '_')}" for r in SUPPRESSION_REASONS),
    "suppressed_other",
)

CSV_COLUMNS: tuple[str, ...] = (
    "kind",
    "category",
    "stage",
    "stage_name",
    "message",
    "touchpoints",
    "channels",
    "questions",
    "when",
    "success_metric",
    "target",
    "as_is",
    "to_be",
    "entered",
    "moved_on",
    "dropped_off",
    "completed",
    "still_here",
    "intake_completed",
    "intake_asked",
    "no_shows",
    "visits_ended",
    "replied",
    "messaged",
    "referrals_booked",
    "referral_to_booking_median_hours",
    "scheduled",
    "sent",
    "delivered",
    "failed",
    "cancelled",
    "expired",
    "suppressed",
    *_SUPPRESSED_COLUMNS,
)


Show = Callable[[int], str]

# A stage's funnel cells, the total first: entered = moved_on + dropped_off + completed + still_here.
FUNNEL = ("entered", "moved_on", "dropped_off", "completed", "still_here")


def _group_texts(total: int, parts: tuple[int, ...], show: Show) -> tuple[str, ...]:
    """An additive group's cells as `show` shows them, the total first, with a second cell
    hidden wherever one hidden cell could be subtracted back (`privacy.complementary`)."""
    total_hidden, flags = complementary(total, parts, hide=lambda n: show(n) != str(n))
    cells = zip((total, *parts), (total_hidden, *flags), strict=True)
    return tuple(HIDDEN if flag and show(n) == str(n) else show(n) for n, flag in cells)


def funnel_texts(f: StageFigures, show: Show) -> dict[str, str]:
    """A stage's funnel cells (`FUNNEL`) as shown, hidden together."""
    parts = (f.moved_on, f.dropped_off, f.completed, f.still_here)
    return dict(zip(FUNNEL, _group_texts(f.entered, parts, show), strict=True))


@dataclass(frozen=True, slots=True)
class _Row:
    category: StageCategory
    stage: Stage | None


def _rows(flow: Flow) -> Iterator[_Row]:
    for category in StageCategory:
        stages = [s for s in flow.stages if s.category is category]
        if not stages:
            yield _Row(category, None)
        for stage in stages:
            yield _Row(category, stage)


def when_text(spec: MessageSpec) -> str:
    """A message's timing as written in the flow, with what sends it."""
    text = str(spec.timing)
    if spec.send_on:
        text += " on " + ", ".join(t.event.value for t in spec.send_on)
    if spec.holdout:
        text += f" (holdout {spec.holdout:g}%)"
    return text


def _channels(stage: Stage) -> list[str]:
    return list(dict.fromkeys(c.value for m in stage.messages for c in m.channels))


def _ideas(stage: Stage) -> list[str]:
    return [
        f"{i.idea} ({i.owner}: {i.who}" + (f", by {i.target})" if i.target else ")")
        for i in stage.notes.ideas
    ]


def ratio_text(ratio: Ratio, show: Show) -> str:
    """A rate as the worksheet shows it: "n of d (p%)", its counts hidden together."""
    return _ratio(ratio, show)


def _ratio(ratio: Ratio, show: Show) -> str:
    """ "n of d (p%)", or without the percentage and with the counts hidden together
    when any of n, d and d - n is hidden: "48 of 50 (96%)" would give the 2 away."""
    if not ratio.denominator:
        return "-"
    if rate_hidden(ratio.numerator, ratio.denominator, hide=lambda n: show(n) != str(n)):
        numerator, denominator = _pair(ratio, show)
        return f"{numerator} of {denominator}"
    return f"{ratio.numerator} of {ratio.denominator} ({100 * (ratio.value or 0):.0f}%)"


def _outcomes(f: StageFigures, show: Show) -> list[str]:
    lines = []
    if f.intake_completion.denominator:
        lines.append(f"intake completed: {_ratio(f.intake_completion, show)}")
    if f.no_show.denominator:
        lines.append(f"no-show: {_ratio(f.no_show, show)}")
    if f.confirmation_by_reply.denominator:
        lines.append(f"replied: {_ratio(f.confirmation_by_reply, show)}")
    if f.referral_to_booking.count and f.referral_to_booking.median is not None:
        lines.append(
            f"referral to booking: median {f.referral_to_booking.median:.1f} h "
            f"over {show(f.referral_to_booking.count)}"
        )
    return lines


def _cell(items: list[str]) -> str:
    return "<br>".join(i.replace("|", "\\|") for i in items) or "-"


def to_markdown(flow: Flow, figures: FlowFigures | None = None, show: Show = str) -> str:
    """The worksheet as Markdown: the stage table, then the per-message and holdout tables."""
    out = [f"# Journey map: {flow.title} (`{flow.id}` v{flow.version})", ""]
    if flow.description:
        out += [flow.description.strip(), ""]
    if figures is not None:
        scope = f"persona `{figures.persona}`" if figures.persona else "all patients"
        out += [
            f"Measured ({scope}): {show(figures.episodes)} episodes of "
            f"{show(figures.patients)} patients. Entries count each time an episode "
            "enters a stage.",
            "",
        ]
    header = [
        "Category",
        "Stage",
        "Touchpoints",
        "Channels",
        "Patient questions",
        "Messages (when)",
        "Success metric",
    ]
    if figures is not None:
        header += ["Entered", "Moved on", "Dropped off", "Completed", "Still here", "Outcomes"]
    header += ["As-is", "To-be"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in _rows(flow):
        title = CATEGORY_TITLES[row.category]
        stage = row.stage
        if stage is None:
            blanks = len(header) - 2
            out.append(f"| {title} | _no stage in this flow_ |" + " - |" * blanks)
            continue
        metric = stage.success_metric
        metric_text = (
            f"{metric.name}" + (f" (target {metric.target})" if metric.target else "")
            if metric
            else "-"
        )
        cells = [
            title,
            f"{stage.name} (`{stage.id}`)",
            _cell(list(stage.touchpoints)),
            _cell(_channels(stage)),
            _cell(list(stage.questions)),
            _cell([f"`{m.id}`: {when_text(m)}" for m in stage.messages]),
            metric_text.replace("|", "\\|"),
        ]
        if figures is not None:
            f = figures.stage(stage.id)
            cells += [*funnel_texts(f, show).values(), _cell(_outcomes(f, show))]
        cells += [_cell(list(stage.notes.as_is)), _cell(_ideas(stage))]
        out.append("| " + " | ".join(cells) + " |")
    if figures is not None:
        out += ["", "## Messages", ""]
        columns = ["Stage", "Message", "Scheduled", "Sent", "Delivered", "Failed"]
        columns += ["Suppressed (by reason)", "Cancelled", "Expired"]
        out += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for m in figures.messages:
            out.append(
                "| "
                + " | ".join(
                    [
                        m.stage_id,
                        m.message_id,
                        show(m.scheduled),
                        show(m.sent),
                        show(m.delivered),
                        show(m.failed),
                        _suppressed(m, show),
                        show(m.cancelled),
                        show(m.expired),
                    ]
                )
                + " |"
            )
        if figures.holdouts:
            out += ["", "## Holdouts", ""]
            out += [
                "| Message | Group | Episodes | Intake completed | No-show | Replied | Moved on |",
                "|---|---|---|---|---|---|---|",
            ]
            for h in figures.holdouts:
                for label, group in (
                    ("messaged", h.messaged),
                    (f"held out {h.percent:g}%", h.held_out),
                ):
                    out.append(
                        f"| {h.message_id} | {label} | {show(group.episodes)} | "
                        f"{_ratio(group.intake_completed, show)} | {_ratio(group.no_show, show)} | "
                        f"{_ratio(group.replied, show)} | {_ratio(group.moved_on, show)} |"
                    )
    if flow.personas:
        out += ["", "## Personas", ""]
        for p in flow.personas:
            rule = ", ".join(
                f"{c.path} = {'|'.join(str(v) for v in c.allowed)}" for c in p.conditions
            )
            focus = ", ".join(p.focus) or "-"
            out.append(
                f"- **{p.name}** (`{p.id}`): {p.description} When: {rule or 'always'}. "
                f"Focus: {focus}."
            )
    return "\n".join(out) + "\n"


def _suppressed(m: MessageFigures, show: Show) -> str:
    if not m.suppressed:
        return "0"
    return ", ".join(f"{reason}: {show(n)}" for reason, n in m.suppressed.items())


class _Lines:
    """A csv writer's file: collects what it writes."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


def to_csv(flow: Flow, figures: FlowFigures | None = None, show: Show = str) -> str:
    """The worksheet as CSV: a `stage` row per stage, then a `message` row per message.

    Lists inside a cell are joined with " | ". Counts as `show` shows them: exact
    by default (for the people who own the flow), or under the small-count rule.
    Every count cell of a row holds a number (0, not blank) or the hidden mark, so
    a spreadsheet sums a column; a cell of the other kind of row stays blank.
    """
    sink = _Lines()
    writer = csv.DictWriter(sink, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in _rows(flow):
        stage = row.stage
        line: dict[str, object] = {"kind": "stage", "category": row.category.value}
        if stage is not None:
            metric = stage.success_metric
            line |= {
                "stage": stage.id,
                "stage_name": stage.name,
                "touchpoints": " | ".join(stage.touchpoints),
                "channels": " | ".join(_channels(stage)),
                "questions": " | ".join(stage.questions),
                "when": " | ".join(f"{m.id}: {when_text(m)}" for m in stage.messages),
                "success_metric": metric.name if metric else "",
                "target": (metric.target or "") if metric else "",
                "as_is": " | ".join(stage.notes.as_is),
                "to_be": " | ".join(_ideas(stage)),
            }
            if figures is not None:
                line |= _stage_counts(figures.stage(stage.id), show)
        writer.writerow(line)
    for stage in flow.stages:
        for spec in stage.messages:
            line = {
                "kind": "message",
                "category": stage.category.value,
                "stage": stage.id,
                "stage_name": stage.name,
                "message": spec.id,
                "channels": " | ".join(c.value for c in spec.channels),
                "when": when_text(spec),
            }
            if figures is not None:
                line |= message_counts(figures.message(spec.id), show)
            writer.writerow(line)
    return "".join(sink.parts)


def message_counts(m: MessageFigures, show: Show) -> dict[str, str]:
    """A message's count cells as the CSV names them: scheduled to expired, then
    `suppressed` and one `suppressed_<reason>` column per reason."""
    return {
        "scheduled": show(m.scheduled),
        "sent": show(m.sent),
        "delivered": show(m.delivered),
        "failed": show(m.failed),
        "cancelled": show(m.cancelled),
        "expired": show(m.expired),
    } | _suppressed_cells(m, show)


def _suppressed_cells(m: MessageFigures, show: Show) -> dict[str, str]:
    """`suppressed` (the total) and one count per reason, 0 rather than blank, hidden
    together: they are an additive group."""
    parts = [m.suppressed.get(r, 0) for r in SUPPRESSION_REASONS]
    parts.append(m.suppressed_total - sum(parts))
    texts = _group_texts(m.suppressed_total, tuple(parts), show)
    return dict(zip(("suppressed", *_SUPPRESSED_COLUMNS), texts, strict=True))


def _stage_counts(f: StageFigures, show: Show) -> dict[str, str]:
    """A stage row's counts. A rate's two counts are hidden together when their
    difference would be hidden: it is the third cell of their additive group."""
    intake = _pair(f.intake_completion, show)
    no_show = _pair(f.no_show, show)
    reply = _pair(f.confirmation_by_reply, show)
    return funnel_texts(f, show) | {
        "intake_completed": intake[0],
        "intake_asked": intake[1],
        "no_shows": no_show[0],
        "visits_ended": no_show[1],
        "replied": reply[0],
        "messaged": reply[1],
        "referrals_booked": show(f.referral_to_booking.count),
        "referral_to_booking_median_hours": ""
        if f.referral_to_booking.median is None
        else f"{f.referral_to_booking.median:.2f}",
    }


def _pair(ratio: Ratio, show: Show) -> tuple[str, str]:
    """(numerator, denominator) as shown; the denominator is the total of the numerator
    and what it leaves out."""
    n, d = ratio.numerator, ratio.denominator
    total, numerator, _ = _group_texts(d, (n, d - n), show)
    return numerator, total


def read_csv(text: str) -> list[dict[str, str]]:
    """The rows of a worksheet CSV, as written by `to_csv`."""
    return list(csv.DictReader(text.splitlines()))


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def mermaid(flow: Flow, figures: FlowFigures | None = None, show: Show = str) -> str:
    """A Mermaid flowchart: the stages by category, the declared moves and, given
    figures, the measured moves with their counts."""
    lines = ["flowchart LR", '  start(("start"))']
    for category in StageCategory:
        stages = [s for s in flow.stages if s.category is category]
        if not stages:
            continue
        lines.append(f'  subgraph {category.value}["{CATEGORY_TITLES[category]}"]')
        for stage in stages:
            label = stage.name
            if figures is not None:
                funnel = funnel_texts(figures.stage(stage.id), show)
                label += f"<br>entered {funnel['entered']}, dropped off {funnel['dropped_off']}"
            lines.append(f'    {_node(stage.id)}["{_label(label)}"]')
        lines.append("  end")
    for (source, target), names in declared_moves(flow).items():
        label = ", ".join(names)
        if figures is not None and source != "start":
            label += f": {show(figures.transitions.get((source, target), 0))}"
        lines.append(f'  {_node(source)} -->|"{_label(label)}"| {_node(target)}')
    return "\n".join(lines) + "\n"


def declared_moves(flow: Flow) -> dict[tuple[str, str], tuple[str, ...]]:
    """The moves the stages' `enter_on` triggers allow: (from, to) -> event types, in flow
    order. "start" is the source of a stage an episode can open in."""
    starting = {t.event for t in flow.starts_on}
    edges: dict[tuple[str, str], list[str]] = {}
    for index, stage in enumerate(flow.stages):
        for trigger in stage.enter_on:
            sources: list[str]
            if trigger.sources and "*" not in trigger.sources:
                sources = list(trigger.sources)
            elif trigger.sources:
                sources = [s.id for s in flow.stages if s.id != stage.id]
            else:
                earlier = _main_line_before(flow, index)
                sources = [earlier] if earlier else []
                if trigger.event in starting:
                    sources.append("start")
            for source in sources:
                edges.setdefault((source, stage.id), []).append(trigger.event.value)
    return {edge: tuple(dict.fromkeys(names)) for edge, names in edges.items()}


def _main_line_before(flow: Flow, index: int) -> str | None:
    """The nearest earlier stage on the main line: not a side stage entered only
    from named stages (a rebooking loop)."""
    for stage in reversed(flow.stages[:index]):
        if not all(t.sources and "*" not in t.sources for t in stage.enter_on):
            return stage.id
    return None


def _node(stage_id: str) -> str:
    return "start" if stage_id == "start" else "s_" + stage_id.replace("-", "_")
