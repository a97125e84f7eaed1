"""The console's audit and funnel pages (every role; aggregates only): per flow, version,
stage and message, narrowed by date range, persona, language and channel.

A flow's page shows the funnel per stage with its drop-offs, each message's
counts (suppressed by reason), holdout against treatment, and the
journey-map worksheet (`insight.worksheet`, as `orchestrator journey map`
writes it), with a CSV export of the same filters. Counts hide under the
small-count rule at the configured threshold (`pages.small_counts`); no page
here names a patient or a contact point. Figures come through
`console.figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from ..api.deps import Registry, Store
from ..api.params import StorableText
from ..api.roles import ANY_ROLE, require_role
from ..event import Channel
from ..flows.model import Flow
from ..insight import FlowFigures, rate_hidden, to_csv
from ..insight.worksheet import (
    CATEGORY_TITLES,
    SUPPRESSION_REASONS,
    funnel_texts,
    message_counts,
    ratio_text,
    when_text,
)
from ..runtime.registry import FlowRegistry
from .figures import AuditFilters, audit_figures
from .pages import render, small_counts

__all__ = ["audit_csv", "audit_list", "audit_page", "router"]

router = APIRouter(
    prefix="/console/audit",
    include_in_schema=False,
    dependencies=[Depends(require_role(*ANY_ROLE))],
)

FlowId = Annotated[str, Path(max_length=200)]
# The earliest and latest days a filter may name: beyond them no episode starts.
_FIRST_DAY = date(1900, 1, 1)
_LAST_DAY = date(9999, 12, 30)


def _filters(
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    persona: Annotated[StorableText | None, Query(max_length=100)] = None,
    language: Annotated[StorableText | None, Query(max_length=20)] = None,
    channel: Annotated[Channel | None, Query()] = None,
) -> AuditFilters:
    for day in (since, until):
        if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a date out of range")
    return AuditFilters(
        version=version,
        since=since,
        until=until,
        persona=persona or None,
        language=language or None,
        channel=channel.value if channel else None,
    )


Filters = Annotated[AuditFilters, Depends(_filters)]


def _flow(registry: FlowRegistry, flow_id: str, filters: AuditFilters) -> Flow:
    """The flow as the filters' version wrote it (the current one without a version)."""
    if flow_id not in registry.current:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")
    flow = registry.current[flow_id]
    if filters.version is not None:
        found = registry.versions.get((flow_id, filters.version))
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such version of this flow")
        flow = found
    if filters.persona is not None and filters.persona not in {p.id for p in flow.personas}:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no such persona in this flow")
    if filters.language is not None and filters.language not in flow.languages:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no such language in this flow")
    return flow


@router.get("", response_class=HTMLResponse)
def audit_list(request: Request, registry: Registry) -> HTMLResponse:
    flows = sorted(registry.current.values(), key=lambda f: f.title)
    return render(request, "audit_list.html", flows=flows)


@router.get("/{flow_id}", response_class=HTMLResponse)
def audit_page(
    request: Request, flow_id: FlowId, filters: Filters, store: Store, registry: Registry
) -> HTMLResponse:
    flow = _flow(registry, flow_id, filters)
    figures = audit_figures(store, flow, filters)
    show = small_counts(request)
    hide = lambda n: show(n) != str(n)  # noqa: E731
    funnel = {}
    for stage in flow.stages:
        f = figures.stage(stage.id)
        cells = funnel_texts(f, show)
        left = f.entered - f.still_here
        rate = (
            "-"
            if not left
            else "hidden"
            if rate_hidden(f.dropped_off, left, hide=hide)
            else f"{100 * f.dropped_off / left:.0f}%"
        )
        funnel[stage.id] = cells | {"drop_rate": rate}
    versions = sorted(v for f, v in registry.versions if f == flow.id)
    return render(
        request,
        "audit.html",
        flow=flow,
        filters=filters,
        figures=figures,
        funnel=funnel,
        messages={m.message_id: message_counts(m, show) for m in figures.messages},
        reasons=SUPPRESSION_REASONS,
        holdouts=_holdouts(figures, show),
        versions=versions,
        channels=[c.value for c in Channel],
        categories=CATEGORY_TITLES,
        when=when_text,
        episodes=show(figures.episodes),
        query=str(request.url.query),
    )


@router.get("/{flow_id}/worksheet.csv")
def audit_csv(
    request: Request, flow_id: FlowId, filters: Filters, store: Store, registry: Registry
) -> Response:
    flow = _flow(registry, flow_id, filters)
    text = to_csv(flow, audit_figures(store, flow, filters), small_counts(request))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{flow.id}-worksheet.csv"'},
    )


def _holdouts(figures: FlowFigures, show: Callable[[int], str]) -> list[dict[str, str]]:
    rows = []
    for h in figures.holdouts:
        for label, group in (
            ("treatment (messaged)", h.messaged),
            (f"held out {h.percent:g}%", h.held_out),
        ):
            rows.append(
                {
                    "message": h.message_id,
                    "group": label,
                    "episodes": show(group.episodes),
                    "intake": ratio_text(group.intake_completed, show),
                    "no_show": ratio_text(group.no_show, show),
                    "replied": ratio_text(group.replied, show),
                    "moved_on": ratio_text(group.moved_on, show),
                }
            )
    return rows
