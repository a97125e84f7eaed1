"""The root Typer app; command groups register themselves on it."""

from __future__ import annotations

import typer

from . import convert, flows, ingest, invariants, journey, kafka, reports, service, simulate

app = typer.Typer(
    name="orchestrator",
    help="Patient communication orchestrator: care-path flows, journeys and messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(flows.app, name="flows")
app.add_typer(service.db_app, name="db")
reports.audit_app.command("check")(invariants.audit_check)
app.add_typer(reports.audit_app, name="audit")
app.add_typer(journey.journey_app, name="journey")
app.command("run")(service.run_command)
app.command("dispatch")(service.dispatch_command)
app.command("simulate")(simulate.simulate_command)
app.command("ingest")(ingest.ingest_command)
app.command("outbox")(reports.outbox_command)
app.command("convert")(convert.convert_command)
app.command("worker")(kafka.worker_command)
app.add_typer(kafka.topics_app, name="topics")


def main() -> None:
    app()
