"""The root Typer app; command groups register themselves on it."""

from __future__ import annotations

import typer

from . import flows, simulate

app = typer.Typer(
    name="orchestrator",
    help="Patient communication orchestrator: care-path flows, journeys and messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(flows.app, name="flows")
app.command("simulate")(simulate.simulate_command)


def main() -> None:
    app()
