"""`orchestrator outbox` and `orchestrator audit report`."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .options import DbOption, settings_with

__all__ = ["audit_app", "outbox_command"]

audit_app = typer.Typer(help="What fired, was suppressed or failed.", no_args_is_help=True)


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _errors() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _console() -> Console:
    out = Console()
    return out if out.is_terminal else Console(width=200)


def outbox_command(
    db: DbOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="newest first, at most this many")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """What the sandbox connectors "sent", newest first."""
    from .stores import opened_store

    with opened_store(settings_with(db=db).db, _errors()) as store:
        entries = store.outbox(limit)
    if as_json:
        for e in entries:
            sys.stdout.write(
                json.dumps(
                    {
                        "key": e.key,
                        "channel": e.channel,
                        "to": e.to,
                        "subject": e.subject,
                        "body": e.body,
                        "sent_at": e.sent_at.isoformat(),
                    }
                )
                + "\n"
            )
        return
    table = Table(title=f"sandbox outbox ({len(entries)} newest)")
    for column in ("sent (UTC)", "channel", "to", "subject / body", "key"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            f"{e.sent_at:%Y-%m-%d %H:%M}", e.channel, e.to, e.subject or e.body, e.key[:12]
        )
    _console().print(table)


@audit_app.command("report")
def audit_report(
    db: DbOption = None,
    flow: Annotated[str | None, typer.Option("--flow", help="one flow id")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time with offset")] = None,
    output: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.TABLE,
) -> None:
    """Per flow, stage and message: how many were scheduled, sent, cancelled,
    suppressed, expired or failed, and why."""
    from .stores import opened_store

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(f"expected an ISO 8601 time, got {since!r}") from None
        if start.tzinfo is None:
            raise typer.BadParameter("--since needs a UTC offset, e.g. 2026-03-01T00:00:00Z")
    with opened_store(settings_with(db=db).db, _errors()) as store:
        rows = store.audit(flow=flow, since=start)
    counts: Counter[tuple[str, int, str, str, str, str]] = Counter(
        (r.flow, r.flow_version, r.stage, r.message, r.status, r.reason or "") for r in rows
    )
    report = [
        {
            "flow": f,
            "flow_version": v,
            "stage": s,
            "message": m,
            "status": st,
            "reason": reason,
            "count": n,
        }
        for (f, v, s, m, st, reason), n in sorted(counts.items())
    ]
    if output is ReportFormat.JSON:
        for line in report:
            sys.stdout.write(json.dumps(line) + "\n")
    elif output is ReportFormat.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(report[0]) if report else ["flow"])
        writer.writeheader()
        writer.writerows(report)
    else:
        table = Table(title=f"audit: {len(rows)} decisions")
        for column in ("flow", "v", "stage", "message", "status", "reason", "count"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for line in report:
            table.add_row(
                *(
                    str(line[k])
                    for k in (
                        "flow",
                        "flow_version",
                        "stage",
                        "message",
                        "status",
                        "reason",
                        "count",
                    )
                )
            )
        _console().print(table)
