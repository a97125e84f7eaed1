"""`orchestrator journey map`: the journey-map worksheet of a care path."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .options import DbOption, FlowsOption, TemplatesOption, settings_with

if TYPE_CHECKING:
    from ..flows.model import Flow
    from ..insight import FlowFigures
    from ..settings import Settings
    from ..templates import TemplateSet

__all__ = ["journey_app"]

journey_app = typer.Typer(help="Journey maps of the care paths.", no_args_is_help=True)


class MapFormat(StrEnum):
    MD = "md"
    CSV = "csv"
    MERMAID = "mermaid"


@journey_app.command("map")
def map_command(
    flow_id: Annotated[str, typer.Option("--flow", help="the flow id, e.g. knee-replacement")],
    output: Annotated[MapFormat, typer.Option("--format")] = MapFormat.MD,
    db: DbOption = None,
    flows_dir: FlowsOption = None,
    templates_dir: TemplatesOption = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="measure a simulated run of these events (JSON lines) instead of a store",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    persona: Annotated[
        str | None, typer.Option("--persona", help="only this persona's episodes")
    ] = None,
    small_counts: Annotated[
        bool,
        typer.Option(
            "--hide-small-counts",
            help='show counts from 1 to 10 as "<11", as the marketing pages do',
        ),
    ] = False,
) -> None:
    """Print the journey-map worksheet of a flow: per stage its touchpoints, channels,
    patient questions, messages and timing, success metric, notes and ideas; with
    `--db` (or ORCHESTRATOR_DB) or `--events`, the measured figures beside them."""
    from ..errors import FlowError
    from ..flows.loader import load_flows
    from ..insight import mermaid, shown, to_csv, to_markdown
    from ..templates import TemplateSet

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    settings = settings_with(db=db, flows=flows_dir, templates=templates_dir)
    try:
        flows = load_flows([settings.flows]).flows
    except FlowError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(2) from None
    flow = flows.get(flow_id)
    if flow is None:
        err.print(f"no flow '{flow_id}' in {settings.flows}; known: {', '.join(sorted(flows))}")
        raise typer.Exit(2)
    if persona is not None and persona not in {p.id for p in flow.personas}:
        known = ", ".join(p.id for p in flow.personas) or "none"
        err.print(f"flow '{flow_id}' has no persona '{persona}'; known: {known}")
        raise typer.Exit(2)
    figures: FlowFigures | None = None
    if events is not None:
        figures = _simulated(
            events, flows, TemplateSet(settings.templates), flow, persona, settings, err
        )
    elif db is not None or os.environ.get("ORCHESTRATOR_DB"):
        figures = _stored(settings.db, flow, persona, err)
    show = shown if small_counts else str
    if output is MapFormat.MD:
        sys.stdout.write(to_markdown(flow, figures, show))
    elif output is MapFormat.CSV:
        sys.stdout.write(to_csv(flow, figures, show))
    else:
        sys.stdout.write(mermaid(flow, figures, show))


def _stored(url: str, flow: Flow, persona: str | None, err: Console) -> FlowFigures:
    # Imported here: the worksheet without figures needs no database driver.
    from ..insight.reading import measured
    from .stores import opened_store

    with opened_store(url, err) as store:
        return measured(store, flow, persona)


def _simulated(
    path: Path,
    flows: Mapping[str, Flow],
    templates: TemplateSet,
    flow: Flow,
    persona: str | None,
    settings: Settings,
    err: Console,
) -> FlowFigures:
    from ..clock import VirtualClock
    from ..errors import InputError
    from ..event_schema import parse_event_json
    from ..insight import PatientEvent, flow_figures
    from ..simulate import Simulator, as_run, in_history_order

    parsed = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append(parse_event_json(line))
        except InputError as exc:
            err.print(f"{path}:{number}: {exc}", markup=False)
            raise typer.Exit(1) from None
    if not parsed:
        return flow_figures(flow, [], [], persona=persona)
    # Played as history, and decided, as `simulate` plays and decides it.
    parsed = in_history_order(parsed)
    start = VirtualClock(parsed[0].occurred_at)
    with Simulator(flows, start, templates, **as_run(settings)) as simulator:
        records = [r for event in parsed for r in simulator.feed(event)]
        records += list(simulator.run_until(None))
        journeys = simulator.journeys.values()
    seen = [PatientEvent(e.id, e.patient.id, e.type, e.occurred_at) for e in parsed]
    return flow_figures(flow, journeys, records, seen, persona=persona)
