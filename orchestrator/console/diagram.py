"""A flow's stage diagram as SVG, drawn on the server: no script, no layout library.

The layout is one column of boxes in flow order, top to bottom, under a
start node. A move to the next stage is a short arrow between the boxes;
any other move (a skip, a loop back, a side stage) runs in a lane of its own
to the right of the column. Each box carries its stage's funnel and, per
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
    lanes = [
        edge
        for edge in moves
        if edge[0] != "start" and order.get(edge[1], -1) != order.get(edge[0], -9) + 1
    ]
    width = _LEFT + _WIDTH + 40 + _LANE * len(lanes) + 160
    parts = [
        # Inline in HTML: no namespace needed (and no other host named on the page).
        f'<svg class="diagram" width="{width}" '
        f'height="{y + 10}" viewBox="0 0 {width} {y + 10}" role="img" '
        f'aria-label="stages of {escape(flow.title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
        f'<circle class="start" cx="{_LEFT + 40}" cy="20" r="12"/>',
        _text(_LEFT + 58, 24, "start"),
    ]
    for stage in flow.stages:
        top, height = tops[stage.id], heights[stage.id]
        stage_counts = counts.get(stage.id)
        css = "stage final" if stage.final else "stage"
        parts.append(f'<g class="{css}" data-stage="{escape(stage.id)}">')
        parts.append(
            f'<rect x="{_LEFT}" y="{top}" width="{_WIDTH}" height="{height}" rx="6" ry="6"/>'
        )
        title = f"{stage.name} ({CATEGORY_TITLES[stage.category]})"
        parts.append(_text(_LEFT + 10, top + _LINE + 2, title, "name"))
        if stage_counts is not None:
            funnel = (
                f"entered {stage_counts.entered} · moved on {stage_counts.moved_on} · "
                f"dropped off {stage_counts.dropped_off}"
            )
            parts.append(_text(_LEFT + 10, top + 2 * _LINE + 4, funnel, "funnel"))
            lines = [_message_line(m) for m in stage_counts.messages]
        else:
            lines = [f"✉ {m.id}" for m in stage.messages]
        for i, line in enumerate(lines):
            parts.append(_text(_LEFT + 18, top + (3 + i) * _LINE + 6, line, "message"))
        parts.append("</g>")
    for (source, target), events in moves.items():
        label = ", ".join(events)
        measured = transitions.get((source, target))
        if measured is not None:
            label += f": {measured}"
        if source == "start":
            x = _LEFT + 40
            parts.append(_arrow(f"M{x},32 L{x},{tops[target]}", "move start"))
            continue
        if (source, target) not in lanes:
            x = _LEFT + 40
            y1 = tops[source] + heights[source]
            parts.append(_arrow(f"M{x},{y1} L{x},{tops[target]}", "move"))
            parts.append(_text(x + 10, y1 + _GAP // 2 + 4, label, "label"))
            continue
        lane = _LEFT + _WIDTH + 20 + _LANE * lanes.index((source, target))
        y1 = tops[source] + heights[source] // 2
        y2 = tops[target] + heights[target] // 2 + 6
        path = f"M{_LEFT + _WIDTH},{y1} L{lane},{y1} L{lane},{y2} L{_LEFT + _WIDTH},{y2}"
        parts.append(_arrow(path, "move lane"))
        parts.append(_text(lane + 4, (y1 + y2) // 2, label, "label"))
    if flow.exits:
        x = _LEFT + _WIDTH + 30 + _LANE * len(lanes)
        parts.append(_text(x, 24, "exits (from any stage):", "exit"))
        for i, exit_ in enumerate(flow.exits):
            parts.append(
                _text(x, 24 + (i + 1) * _LINE, f"{exit_.trigger.event.value} → {exit_.outcome}")
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _arrow(path: str, css: str) -> str:
    return f'<path class="{css}" d="{path}" fill="none" marker-end="url(#arrow)"/>'
