"""`orchestrator run` and `orchestrator db upgrade`."""

from __future__ import annotations

import ipaddress
import signal
from typing import Annotated

import typer
from rich.console import Console

from ..gc_tuning import tune_for_throughput
from .options import (
    DbOption,
    FlowsOption,
    TemplatesOption,
    exit_on_startup_errors,
    settings_with,
)

db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)


def run_command(
    host: Annotated[str | None, typer.Option("--host", help="address to bind")] = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port")] = None,
    mllp_port: Annotated[
        int | None, typer.Option("--mllp-port", help="also take HL7 v2 over MLLP on this port")
    ] = None,
    db: DbOption = None,
    flows: FlowsOption = None,
    templates: TemplatesOption = None,
) -> None:
    """Run the embedded service: HTTP ingest, scheduler and dispatcher in one process.

    Sandbox connectors record what would be sent (`orchestrator outbox`).
    SQLite stores are migrated on start; PostgreSQL needs `db upgrade` first.
    """
    import uvicorn

    from ..api import create_app
    from ..logs import configure
    from ..service import EmbeddedService

    settings = settings_with(db=db, flows=flows, templates=templates)
    settings = settings.model_copy(
        update={
            k: v
            for k, v in {"host": host, "port": port, "mllp_port": mllp_port}.items()
            if v is not None
        }
    )
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if not _loopback(settings.host) and not settings.role_tokens():
        err.print(
            f"refusing to bind {settings.host}: set ORCHESTRATOR_API_TOKEN "
            "(or ORCHESTRATOR_API_TOKENS) to serve beyond loopback"
        )
        raise typer.Exit(2)
    configure()
    with exit_on_startup_errors(err):
        service = EmbeddedService.build(settings, migrate=settings.db.startswith("sqlite"))
    app = create_app(service)
    tune_for_throughput()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for
    # the handler it found installed; a no-op one makes a clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if settings.mllp_port is not None:
        import asyncio

        from ..service.inbound import serve

        asyncio.run(serve(app, service, settings.mllp_port))
        return
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=30
    )


def dispatch_command(
    db: DbOption = None,
    flows: FlowsOption = None,
    templates: TemplatesOption = None,
) -> None:
    """Run a dispatcher alone: send what falls due, take no events in.

    Beside workers (or `run`) started with ORCHESTRATOR_DISPATCH=off, so that
    consuming and sending scale apart. Several dispatchers share the due
    messages under leases. Stops on SIGTERM or SIGINT once its batch is
    recorded. SQLite stores are migrated on start; PostgreSQL needs `db upgrade`.
    """
    import os
    import socket

    from ..logs import configure
    from ..service.runtime import Runtime

    settings = settings_with(db=db, flows=flows, templates=templates)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    configure()
    owner = f"dispatch:{socket.gethostname()}:{os.getpid()}"
    with exit_on_startup_errors(err):
        runtime = Runtime.build(settings, migrate=settings.db.startswith("sqlite"), owner=owner)
    loop = runtime.dispatch_here()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Only asks: the loop stops after the batch in hand is recorded.
        signal.signal(signum, lambda *_: loop.stop(0))
    try:
        loop.run()
    finally:
        runtime.close()


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Apply the schema migrations to the store."""
    from ..errors import StoreError
    from ..store import connect, head, upgrade

    settings = settings_with(db=db)
    try:
        upgrade(connect(settings.db))
    except StoreError as exc:
        Console(stderr=True).print(f"store: {exc}", markup=False)
        raise typer.Exit(1) from None
    Console().print(f"store at migration {head()}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["db_app", "dispatch_command", "run_command"]
