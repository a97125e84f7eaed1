"""`orchestrator worker`, `orchestrator topics create` and the Kafka side of `ingest`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .options import (
    DbOption,
    FlowsOption,
    TemplatesOption,
    count_lines,
    exit_on_startup_errors,
    settings_with,
)

__all__ = ["publish_file", "topics_app", "worker_command"]

topics_app = typer.Typer(help="The Kafka topics.", no_args_is_help=True)

BrokerOption = Annotated[
    str | None,
    typer.Option("--broker", help="kafka://HOST:PORT (env ORCHESTRATOR_BROKER)"),
]


def worker_command(
    broker: BrokerOption = None,
    db: DbOption = None,
    flows: FlowsOption = None,
    templates: TemplatesOption = None,
    partitions: Annotated[
        int | None, typer.Option("--partitions", min=1, help="partitions the topics have")
    ] = None,
) -> None:
    """Run a worker of the Kafka runtime: consume the patient topics, schedule and dispatch.

    Start more workers (same --broker, same --db) to share the partitions and
    the dispatch work. PostgreSQL needs `db upgrade` first.
    """
    from ..kafka.topics import BrokerError, bootstrap_servers
    from ..kafka.worker import run_worker
    from ..logs import configure

    settings = settings_with(
        broker=broker, db=db, flows=flows, templates=templates, kafka_partitions=partitions
    )
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        bootstrap_servers(settings.broker)
    except BrokerError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    configure()
    with exit_on_startup_errors(err):
        status = run_worker(settings, settings.broker)
    if status != 0:
        # After a crash Faust's consumer thread may outlive the worker and hold
        # the interpreter open: leave at once, so the process supervisor
        # restarts the worker and its partitions are read again from the
        # committed offsets.
        # (Not logging.shutdown(): a handler lock held by that thread would hang it.)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


@topics_app.command("create")
def topics_create(
    broker: BrokerOption = None,
    partitions: Annotated[
        int | None, typer.Option("--partitions", min=1, help="partitions per topic")
    ] = None,
    replication: Annotated[
        int, typer.Option("--replication", min=1, help="replicas per partition")
    ] = 1,
) -> None:
    """Create the patient topics and the dead-letter topic (existing ones are kept)."""
    from ..kafka.topics import BrokerError, create_topics

    settings = settings_with(broker=broker, kafka_partitions=partitions)
    try:
        plan = create_topics(
            settings.broker, partitions=settings.kafka_partitions, replication=replication
        )
    except BrokerError as exc:
        Console(stderr=True, soft_wrap=True).print(str(exc), markup=False)
        raise typer.Exit(1) from None
    out = Console(soft_wrap=True, highlight=False)
    for name in plan.created:
        out.print(f"created {name} ({settings.kafka_partitions} partitions)")
    for name in plan.existing:
        out.print(f"exists  {name}")


def publish_file(
    file: Path, broker: str, lines: Callable[[Path], Iterator[tuple[int, bytes]]]
) -> None:
    """Publish a JSON-lines file to the topics; exit 1 if a line could not be routed.

    A progress bar on a terminal (stderr); the summary, one line, always.
    """
    from rich.progress import Progress

    from ..kafka.publish import Publisher
    from ..kafka.topics import BrokerError

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        with (
            Progress(console=err, transient=True, disable=not err.is_terminal) as progress,
            Publisher(broker) as publisher,
        ):
            total = count_lines(file) if err.is_terminal else None
            task = progress.add_task("publishing", total=total)

            def counted() -> Iterator[tuple[int, bytes]]:
                for numbered in lines(file):
                    yield numbered
                    progress.advance(task)

            report = publisher.publish(counted())
    except BrokerError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    for number, why in report.unroutable:
        err.print(f"{file}:{number}: {why}", markup=False)
    total = sum(report.published.values())
    by_topic = ", ".join(f"{n} to {t}" for t, n in sorted(report.published.items()))
    # soft_wrap: one line even in a pipe (80 columns), where the topics would wrap it.
    Console(highlight=False, soft_wrap=True).print(
        f"{total} published"
        + (f" ({by_topic})" if by_topic else "")
        + (f", {len(report.unroutable)} unroutable" if report.unroutable else "")
    )
    if report.unroutable:
        raise typer.Exit(1)
