"""`orchestrator flows validate | schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import FlowError
from ..flows.loader import flow_paths, load_flows
from ..flows.schema import flow_json_schema
from ..templates import TemplateSet
from .options import settings_with

app = typer.Typer(help="Validate flow files and print their schema.", no_args_is_help=True)


@app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="flow files or directories")] = None,
    templates: Annotated[
        Path | None, typer.Option("--templates", help="templates directory")
    ] = None,
    flows_dir: Annotated[Path | None, typer.Option("--flows", help="flows directory")] = None,
) -> None:
    """Validate flow files and the templates they use; exit 1 listing every problem."""
    settings = settings_with()
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    targets = paths or [flows_dir or settings.flows]
    missing = [p for p in targets if not p.exists()]
    if missing:
        err.print(f"[red]no such file or directory:[/] {', '.join(map(str, missing))}")
        raise typer.Exit(2)
    files = flow_paths(targets)
    if not files:
        err.print(f"[red]no flow files (*.yaml) in[/] {', '.join(map(str, targets))}")
        raise typer.Exit(1)
    try:
        loaded = load_flows(files, TemplateSet(templates or settings.templates))
    except FlowError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, highlight=False)
        err.print(f"[red]{len(exc.problems)} problem(s)[/] in {len(files)} file(s)")
        raise typer.Exit(1) from None
    for flow_id, path in loaded.files.items():
        flow = loaded.flows[flow_id]
        messages = sum(len(s.messages) for s in flow.stages)
        out.print(
            f"[green]ok[/] {path}: {flow.id} v{flow.version}, "
            f"{len(flow.stages)} stages, {messages} messages",
            highlight=False,
        )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a flow file (for editors' autocompletion)."""
    typer.echo(json.dumps(flow_json_schema(), indent=2))
