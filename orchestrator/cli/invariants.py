"""`orchestrator audit check`: the store's invariants, for operators and the soak benchmark."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from .options import DbOption, settings_with

__all__ = ["audit_check"]


class CheckFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def audit_check(
    db: DbOption = None,
    due_before: Annotated[
        str | None,
        typer.Option(
            "--due-before",
            help="ISO 8601 time with offset: messages due before it must be final (default: now)",
        ),
    ] = None,
    output: Annotated[CheckFormat, typer.Option("--format")] = CheckFormat.TEXT,
) -> None:
    """Check the store's invariants: nothing sent after a final status, nothing sent
    twice, every due message final, no send begun past its staleness limit. Exit 1 on a violation."""
    from ..clock import SystemClock
    from ..store import check_invariants, standard_invariants
    from .stores import opened_store

    if due_before is None:
        instant = SystemClock().now()
    else:
        try:
            instant = datetime.fromisoformat(due_before)
        except ValueError:
            raise typer.BadParameter(f"expected an ISO 8601 time, got {due_before!r}") from None
        if instant.tzinfo is None:
            raise typer.BadParameter("--due-before needs a UTC offset, e.g. 2026-03-01T00:00:00Z")
    settings = settings_with(db=db)
    checks = standard_invariants(settings.stale_after)
    with opened_store(settings.db, Console(stderr=True, soft_wrap=True)) as store:
        report = check_invariants(store, due_before=instant, invariants=checks)
    broken = {v.name: v for v in report.violations}
    for name in report.checked:
        found = broken.get(name)
        if output is CheckFormat.JSON:
            line = {
                "invariant": name,
                "ok": found is None,
                "count": found.count if found else 0,
                "examples": list(found.examples) if found else [],
            }
            sys.stdout.write(json.dumps(line) + "\n")
        elif found is None:
            sys.stdout.write(f"ok   {name}\n")
        else:
            examples = ", ".join(found.examples)
            sys.stdout.write(
                f"FAIL {name}: {found.count} message(s); {found.promise}; e.g. {examples}\n"
            )
    if not report.ok:
        raise typer.Exit(1)
