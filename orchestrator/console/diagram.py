"""A flow's stage diagram as SVG, drawn on the server: no script, no layout library.

The layout is one column of boxes in flow order, top to bottom, under a
start node. A move to the next stage is a short arrow between the boxes;
any other move (a skip, a loop back, a side stage) runs in a numbered lane of
its own to the right of the column, named in a legend beside it, and an
episode that can open in a later stage gets a lane from the start node on
the left. Each box carries its stage's funnel and, per
message, what was sent, suppressed by reason and cancelled. Counts arrive as
text already shown under the small-count rule: this module draws, it does not
decide what may be seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from ..flows.model import Flow
from ..insight.worksheet import CATEGORY_TITLES, declared_moves

__all__ = ["MessageCounts", "StageCounts", "stage_diagram"]

_WIDTH = 470
_LEFT = 20
_TOP = 60
_GAP = 34
_LINE = 16
_LANE = 16


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """A message's figures as shown: sent, suppressed by reason, cancelled, expired."""

    message_id: str
    sent: str
    suppressed: Sequence[tuple[str, str]]
    cancelled: str
    expired: str


@dataclass(frozen=True, slots=True)
class StageCounts:
    """A stage's funnel as shown, and its messages'."""

    entered: str
    moved_on: str
    dropped_off: str
    messages: Sequence[MessageCounts]


def _box_height(messages: int) -> int:
    return 3 * _LINE + 14 + _LINE * messages


def _text(x: int, y: int, body: str, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f'<text x="{x}" y="{y}"{attribute}>{escape(body)}</text>'


def _message_line(counts: MessageCounts) -> str:
    parts = [f"sent {counts.sent}"]
    if counts.suppressed:
        parts.append(
            "suppressed " + ", ".join(f"{reason} {count}" for reason, count in counts.suppressed)
        )
    parts.append(f"cancelled {counts.cancelled}")
    if counts.expired != "0":
        parts.append(f"expired {counts.expired}")
    return f"✉ {counts.message_id}: " + "; ".join(parts)


def stage_diagram(
    flow: Flow,
    counts: Mapping[str, StageCounts],
    transitions: Mapping[tuple[str, str], str],
) -> str:
    """The diagram of `flow` as an SVG document fragment.

    `counts` is each stage's figures as shown (a stage missing from it is drawn
    without figures), `transitions` the measured moves (from, to) as shown.
    """
    tops: dict[str, int] = {}
    heights: dict[str, int] = {}
    y = _TOP
    for stage in flow.stages:
        tops[stage.id] = y
        heights[stage.id] = _box_height(len(stage.messages))
        y += heights[stage.id] + _GAP
    order = {stage.id: i for i, stage in enumerate(flow.stages)}
    moves = declared_moves(flow)
    first = flow.stages[0].id if flow.stages else None
    # Moves that are not "on to the next box" run in lanes: right of the column
    # between stages, left of it from the start node.
    lanes = [
        edge
        for edge in moves
        if edge[0] != "start" and order.get(edge[1], -1) != order.get(edge[0], -9) + 1
    ]
    starts = [edge for edge in moves if edge[0] == "start" and edge[1] != first]
    box_x = _LEFT + _LANE * (len(starts) + 1)
    right = box_x + _WIDTH
    legend_x = right + 24 + _LANE * len(lanes)
    # The legend's width, from its longest line (moves and exits) at about 7 px a character.
    names = {s.id: s.name for s in flow.stages}
    longest = max(
        [len(names[s]) + len(names[d]) + 40 + 30 * len(moves[(s, d)]) for s, d in lanes]
        + [len(e.trigger.event.value) + len(e.outcome) + 4 for e in flow.exits]
        + [24],
    )
    width = legend_x + 7 * longest + 20
    parts = [
        # Inline in HTML: no namespace needed (and no other host named on the page).
        f'<svg class="diagram" width="{width}" '
        f'height="{y + 10}" viewBox="0 0 {width} {y + 10}" role="img" '
        f'aria-label="stages of {escape(flow.title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
        f'<circle class="start" cx="{box_x + 40}" cy="20" r="12"/>',
        _text(box_x + 58, 24, "start"),
    ]
    for stage in flow.stages:
        top, height = tops[stage.id], heights[stage.id]
        stage_counts = counts.get(stage.id)
        css = "stage final" if stage.final else "stage"
        parts.append(f'<g class="{css}" data-stage="{escape(stage.id)}">')
        parts.append(
            f'<rect x="{box_x}" y="{top}" width="{_WIDTH}" height="{height}" rx="6" ry="6"/>'
        )
        parts.append(_text(box_x + 10, top + _LINE + 2, stage.name, "name"))
        facts = CATEGORY_TITLES[stage.category] + (" · final" if stage.final else "")
        if stage_counts is not None:
            facts += (
                f" · entered {stage_counts.entered} · moved on {stage_counts.moved_on} · "
                f"dropped off {stage_counts.dropped_off}"
            )
            lines = [_message_line(m) for m in stage_counts.messages]
        else:
            lines = [f"✉ {m.id}" for m in stage.messages]
        parts.append(_text(box_x + 10, top + 2 * _LINE + 4, facts, "funnel"))
        for i, line in enumerate(lines):
            parts.append(_text(box_x + 18, top + (3 + i) * _LINE + 6, line, "message"))
        parts.append("</g>")
    legend: list[str] = []
    for (source, target), events in moves.items():
        label = ", ".join(events)
        measured = transitions.get((source, target))
        if measured is not None:
            label += f": {measured}"
        x = box_x + 40
        if source == "start" and target == first:
            parts.append(_arrow(f"M{x},32 L{x},{tops[target]}", "move start"))
        elif source == "start":
            lane = _LEFT + _LANE * starts.index((source, target))
            y2 = tops[target] + heights[target] // 2
            path = f"M{box_x + 28},20 L{lane},20 L{lane},{y2} L{box_x},{y2}"
            parts.append(_arrow(path, "move start"))
        elif (source, target) not in lanes:
            y1 = tops[source] + heights[source]
            parts.append(_arrow(f"M{x},{y1} L{x},{tops[target]}", "move"))
            parts.append(_text(x + 10, y1 + _GAP // 2 + 4, label, "label"))
        else:
            index = lanes.index((source, target))
            lane = right + 20 + _LANE * index
            # Spread the lanes' ends over the boxes' edges, so that no two meet.
            y1 = tops[source] + 14 + (index * 7) % max(heights[source] - 20, 1)
            y2 = tops[target] + 20 + (index * 7) % max(heights[target] - 26, 1)
            path = f"M{right},{y1} L{lane},{y1} L{lane},{y2} L{right},{y2}"
            parts.append(_arrow(path, "move lane"))
            parts.append(_text(lane - 4, (y1 + y2) // 2, str(index + 1), "lane"))
            legend.append(f"{index + 1}: {names[source]} → {names[target]} on {label}")
    notes = [*legend]
    if flow.exits:
        notes.append("Exits, from any stage:")
        notes += [f"{e.trigger.event.value} → {e.outcome}" for e in flow.exits]
    for i, note in enumerate(notes):
        parts.append(_text(legend_x, _TOP + _LINE * i + 12, note, "legend"))
    parts.append("</svg>")
    return "\n".join(parts)


def _arrow(path: str, css: str) -> str:
    return f'<path class="{css}" d="{path}" fill="none" marker-end="url(#arrow)"/>'
