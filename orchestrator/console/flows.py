"""The console's flow pages: the care paths with their versions, one flow's stages and
messages with its diagram and live figures, and the diff between two versions.

Aggregates only, open to every role: counts from 1 to 10 are shown as "<11"
(`insight.privacy`), a stage's funnel cells hidden together
(`worksheet.funnel_texts`). Figures come through `console.figures`, the one
place that reads them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse

from ..api.deps import Registry, Settings, Store
from ..api.roles import ANY_ROLE, require_role
from ..flows.model import Flow, MessageSpec
from ..insight import FlowFigures, shown
from ..insight.worksheet import CATEGORY_TITLES, funnel_texts, when_text
from ..runtime.registry import FlowRegistry
from .diagram import MessageCounts, StageCounts, stage_diagram
from .figures import flow_figures_for, running_by_version
from .pages import render

__all__ = ["flow_diff", "flow_page", "flows_page", "router"]

router = APIRouter(
    prefix="/console/flows",
    include_in_schema=False,
    dependencies=[Depends(require_role(*ANY_ROLE))],
)

# A flow id as the flow files allow; anything else names no flow.
FlowId = Annotated[str, Path(max_length=200)]


@dataclass(frozen=True, slots=True)
class _VersionRow:
    version: int
    current: bool
    running: int


def _versions(
    registry: FlowRegistry, flow_id: str, running: Mapping[int, int]
) -> list[_VersionRow]:
    current = registry.current[flow_id].version
    numbers = sorted({v for f, v in registry.versions if f == flow_id} | {current}, reverse=True)
    return [_VersionRow(v, v == current, running.get(v, 0)) for v in numbers]


def _flow_or_404(registry: FlowRegistry, flow_id: str) -> Flow:
    flow = registry.current.get(flow_id)
    if flow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")
    return flow


@router.get("", response_class=HTMLResponse)
def flows_page(request: Request, store: Store, registry: Registry) -> HTMLResponse:
    rows = []
    for flow in sorted(registry.current.values(), key=lambda f: f.title):
        running = running_by_version(store, flow.id)
        rows.append({"flow": flow, "versions": _versions(registry, flow.id, running)})
    return render(request, "flows.html", rows=rows)


@router.get("/{flow_id}", response_class=HTMLResponse)
def flow_page(
    request: Request, flow_id: FlowId, store: Store, registry: Registry, settings: Settings
) -> HTMLResponse:
    flow = _flow_or_404(registry, flow_id)
    figures = flow_figures_for(store, flow)
    counts = _stage_counts(flow, figures)
    transitions = {edge: shown(n) for edge, n in figures.transitions.items()}
    return render(
        request,
        "flow.html",
        flow=flow,
        figures=figures,
        counts=counts,
        diagram=stage_diagram(flow, counts, transitions),
        versions=_versions(registry, flow.id, running_by_version(store, flow.id)),
        categories=CATEGORY_TITLES,
        rules={m.id: _rules(flow, m, settings.stale_after) for _, m in flow.specs.values()},
        when=when_text,
    )


@router.get("/{flow_id}/diff", response_class=HTMLResponse)
def flow_diff(
    request: Request,
    flow_id: FlowId,
    store: Store,
    registry: Registry,
    old: Annotated[int, Query(alias="from", ge=1, le=1_000_000)],
    new: Annotated[int, Query(alias="to", ge=1, le=1_000_000)],
) -> HTMLResponse:
    flow = _flow_or_404(registry, flow_id)
    sources = {v: source for (f, v), (_, source) in store.flow_versions().items() if f == flow.id}
    if old not in sources or new not in sources:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such version of this flow")
    lines = difflib.unified_diff(
        _readable(sources[old]),
        _readable(sources[new]),
        fromfile=f"{flow.id} version {old}",
        tofile=f"{flow.id} version {new}",
        lineterm="",
    )
    rows = [(_line_kind(line), line) for line in lines]
    return render(request, "diff.html", flow=flow, old=old, new=new, rows=rows)


def _readable(source: str) -> list[str]:
    """A stored source (the flow file as JSON) as YAML lines, as the flow files read."""
    text = yaml.safe_dump(json.loads(source), sort_keys=False, allow_unicode=True, width=100)
    return text.splitlines()


def _line_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "added", "-": "removed"}.get(line[:1], "same")


def _stage_counts(flow: Flow, figures: FlowFigures) -> dict[str, StageCounts]:
    counts = {}
    for stage in flow.stages:
        funnel = funnel_texts(figures.stage(stage.id), shown)
        messages = []
        for spec in stage.messages:
            m = next((f for f in figures.messages if f.message_id == spec.id), None)
            if m is None:
                messages.append(MessageCounts(spec.id, "0", (), "0", "0"))
                continue
            messages.append(
                MessageCounts(
                    spec.id,
                    shown(m.sent),
                    tuple((reason, shown(n)) for reason, n in sorted(m.suppressed.items())),
                    shown(m.cancelled),
                    shown(m.expired),
                )
            )
        counts[stage.id] = StageCounts(
            funnel["entered"], funnel["moved_on"], funnel["dropped_off"], messages
        )
    return counts


def _rules(flow: Flow, spec: MessageSpec, stale_after: timedelta) -> dict[str, Any]:
    """The send-time rules that apply to a message (`policies.gate`), in words."""
    quiet = flow.quiet_hours
    expiry = spec.expiry or MessageSpec.default_expiry(spec.timing)
    caps = []
    for channel in spec.channels:
        cap = flow.frequency_caps.get(channel)
        if spec.essential:
            caps.append(f"{channel.value}: exempt (essential)")
        elif cap is None:
            caps.append(f"{channel.value}: no cap")
        else:
            caps.append(f"{channel.value}: at most {cap.limit} per {_duration(cap.per)}")
    return {
        "conditions": [
            f"{c.path} is " + " or ".join(str(v) for v in c.allowed) for c in spec.conditions
        ],
        "cancel_on": [t.event.value for t in (*spec.cancel_on, *spec.unless)],
        "expiry": str(expiry)
        if expiry is not None
        else f"{_duration(stale_after)} after due (ORCHESTRATOR_STALE_AFTER)",
        "quiet_hours": "none"
        if quiet.start == quiet.end
        else f"deferred from {quiet.start:%H:%M} to {quiet.end:%H:%M}, patient's local time",
        "window": f"{spec.window[0]:%H:%M}–{spec.window[1]:%H:%M} local" if spec.window else None,
        "caps": caps,
        "holdout": f"{spec.holdout:g}% held out" if spec.holdout else None,
    }


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
