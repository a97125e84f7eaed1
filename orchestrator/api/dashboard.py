"""The marketing and operations dashboard: server-rendered pages under `/dashboard`.

Jinja2 templates with inline SVG charts; no script, no front-end build.
Aggregates only: no patient id, contact point or episode appears on these
pages, and every count from 1 to 10 is shown as "<11" (`insight.privacy`),
bars included (a hidden count is drawn as if it were 10); in a funnel row a
second cell is hidden beside a lone hidden one, so that subtraction cannot
give it back (`privacy.complementary`). A patient's
timeline stays at `GET /patients/{id}/timeline`, behind the token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..flows.model import Flow
from ..insight import FlowFigures, hidden, mermaid, shown, shown_rate
from ..insight.reading import measured
from ..insight.worksheet import CATEGORY_TITLES, funnel_texts, when_text
from ..store import FlowTotals
from .deps import CurrentFlows, Store
from .roles import ANY_ROLE, require_role

__all__ = ["flow_page", "flows_page", "router"]

_BAR_WIDTH = 480
_ROW = 30


@dataclass(frozen=True, slots=True)
class _Bar:
    label: str
    text: str
    y: int
    width: int
    hidden: bool


def _bars(items: Sequence[tuple[str, int, str]]) -> list[_Bar]:
    """Horizontal bars of (label, count, text as shown). A hidden count (its text is not the
    count: small, or hidden beside another) is drawn as 10, so its bar tells no more than "<11"."""
    drawn = [(label, n if text == str(n) else 10, text) for label, n, text in items]
    top = max((d for _, d, _ in drawn), default=0) or 1
    return [
        _Bar(label, text, i * _ROW, round(_BAR_WIDTH * d / top), text != str(n))
        for i, ((label, d, text), (_, n, _)) in enumerate(zip(drawn, items, strict=True))
    ]


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.api", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = shown
    return env


router = APIRouter(prefix="/dashboard", dependencies=[Depends(require_role(*ANY_ROLE))])


def _page(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_environment().get_template(name).render(**context))


def _flow_or_404(flows: Mapping[str, Flow], flow_id: str) -> Flow:
    flow = flows.get(flow_id)
    if flow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no flow '{flow_id}'")
    return flow


@router.get("", response_class=HTMLResponse)
def flows_page(store: Store, flows: CurrentFlows) -> HTMLResponse:
    totals = store.flow_totals()
    rows = []
    for flow in sorted(flows.values(), key=lambda f: f.title):
        counts = totals.get(flow.id, FlowTotals())
        rows.append(
            {
                "flow": flow,
                "episodes": counts.episodes,
                "sent": counts.by_status.get("sent", 0),
                "suppressed": counts.by_status.get("suppressed", 0),
            }
        )
    return _page("dashboard/flows.html", rows=rows)


@router.get("/flows/{flow_id}", response_class=HTMLResponse)
def flow_page(
    flow_id: str, store: Store, flows: CurrentFlows, persona: str | None = None
) -> HTMLResponse:
    flow = _flow_or_404(flows, flow_id)
    if persona is not None and persona not in {p.id for p in flow.personas}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no persona '{persona}'")
    figures = measured(store, flow, persona)
    funnels = {s.stage_id: funnel_texts(s, shown) for s in figures.stages}
    return _page(
        "dashboard/flow.html",
        flow=flow,
        figures=figures,
        persona=persona,
        categories=CATEGORY_TITLES,
        funnel=_bars(
            [(s.stage_id, s.entered, funnels[s.stage_id]["entered"]) for s in figures.stages]
        ),
        funnels=funnels,
        daily=_daily(figures),
        rate=shown_rate,
        when=when_text,
        diagram=mermaid(flow, figures, shown),
        row_height=_ROW,
        bar_width=_BAR_WIDTH,
    )


def _daily(figures: FlowFigures) -> list[dict[str, Any]]:
    """Sends and deliveries per day as paired columns."""
    days = figures.daily
    top = max((max(_drawn(d.sent), _drawn(d.delivered)) for d in days), default=0) or 1
    height = 120
    return [
        {
            "day": d.day.isoformat(),
            "x": i * 28,
            "sent": shown(d.sent),
            "delivered": shown(d.delivered),
            "sent_h": round(height * _drawn(d.sent) / top),
            "delivered_h": round(height * _drawn(d.delivered) / top),
            "height": height,
        }
        for i, d in enumerate(days)
    ]


def _drawn(count: int) -> int:
    return 10 if hidden(count) else count
