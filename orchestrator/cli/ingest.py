"""`orchestrator ingest FILE --url URL | --broker URL`: post events to a service or to Kafka.

With `--history`, the file is one import: the service holds every message its
events schedule until the last batch is in, so a later line can still cancel
what an earlier one scheduled (see `orchestrator/store/imports.py`).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ..clock import SystemClock
from ..errors import InputError
from ..limits import read_json
from .kafka import publish_file
from .options import count_lines, settings_with

if TYPE_CHECKING:
    import httpx

__all__ = ["ingest_command"]


def ingest_command(
    file: Annotated[
        Path, typer.Argument(help="events, one JSON object per line", exists=True, dir_okay=False)
    ],
    url: Annotated[
        str, typer.Option("--url", help="the service's base URL")
    ] = "http://127.0.0.1:8000",
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="events per request")
    ] = 500,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per request")] = 60.0,
    shift_to_now: Annotated[
        bool,
        typer.Option(
            "--shift-to-now", help="move every time so the latest event happens now (demos)"
        ),
    ] = False,
    broker: Annotated[
        str | None,
        typer.Option("--broker", help="publish to Kafka (kafka://HOST:PORT) instead of --url"),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="one import: nothing the file schedules is sent before its last line is in",
        ),
    ] = False,
) -> None:
    """Post JSON-lines events in batches; print what was accepted, duplicate or rejected.

    With --broker, publish each event to its topic, keyed by patient id.
    With --history, the whole file is decided before anything it schedules is
    sent (needs --url: the service holds the messages).
    Exit status 1 when any event was rejected or a request failed.
    """
    # Imported here, as in every command, so that `orchestrator --help` stays quick.
    import httpx
    from rich.progress import Progress

    if broker is not None and history:
        Console(stderr=True).print(
            "--history needs --url: post the file to a service (`orchestrator run`) on the "
            "workers' database; its hold applies to every dispatcher of that database",
            markup=False,
        )
        raise typer.Exit(2)
    if broker is not None:
        shift = _shift(file) if shift_to_now else None
        publish_file(file, broker, lambda f: _numbered(f, shift))
        return
    settings = settings_with()
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    headers = {"content-type": "application/x-ndjson"}
    if settings.api_token is not None:
        headers["authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    counts: Counter[str] = Counter()
    total = count_lines(file)
    failed = False
    with (
        httpx.Client(base_url=url, headers=headers, timeout=timeout) as client,
        Progress(console=err, transient=True, disable=not err.is_terminal) as progress,
    ):
        task = progress.add_task("ingesting", total=total)
        shift = _shift(file) if shift_to_now else None
        params = {"import": _open_import(client, err)} if history else {}
        # Closed whatever happens: an import left open would hold its messages
        # until its hold runs out, for nothing.
        with _closing_import(client, params.get("import"), err):
            for numbers, lines in _batches(file, batch):
                first_line = numbers[0]
                if shift is not None:
                    lines = [_shifted(line, shift) for line in lines]
                try:
                    response = client.post(
                        "/events", content="".join(lines).encode(), params=params
                    )
                except httpx.HTTPError as exc:
                    err.print(f"{file}:{first_line}: request failed ({exc.__class__.__name__})")
                    raise typer.Exit(1) from None
                if history and response.status_code == 409:
                    # Its messages may have gone out already: the promise is broken, say so.
                    err.print(
                        f"{file}:{first_line}: the import is no longer open (its hold ran "
                        "out: a batch took longer than ORCHESTRATOR_IMPORT_HOLD_SECONDS?)",
                        markup=False,
                    )
                    raise typer.Exit(1)
                results = _results(response)
                if results is None:
                    err.print(
                        f"{file}:{first_line}: HTTP {response.status_code}: {response.text[:300]}",
                        markup=False,
                    )
                    failed = True
                    counts["failed"] += len(lines)
                else:
                    for result in results:
                        counts[str(result.get("status"))] += 1
                        if result.get("status") == "rejected":
                            index = result.get("index")
                            line = numbers[index] if isinstance(index, int) else first_line
                            errors = result.get("errors")
                            why = (
                                "; ".join(map(str, errors))
                                if isinstance(errors, list)
                                else "rejected"
                            )
                            err.print(f"{file}:{line}: {why}", markup=False)
                progress.advance(task, len(lines))
    # One line, also in a pipe or a file (no wrapping at 80 columns there).
    Console(soft_wrap=True, highlight=False).print(
        ", ".join(
            f"{counts[k]} {k}" for k in ("accepted", "duplicate", "rejected", "failed") if counts[k]
        )
        or "no events"
    )
    if failed or counts["rejected"]:
        raise typer.Exit(1)


def _open_import(client: httpx.Client, err: Console) -> str:
    """Open an import on the service; its id."""
    import httpx

    try:
        response = client.post("/imports")
        response.raise_for_status()
        opened = response.json()["id"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        err.print(f"--history: could not open an import ({exc.__class__.__name__})")
        raise typer.Exit(1) from None
    if not isinstance(opened, str):
        err.print("--history: the service answered without an import id")
        raise typer.Exit(1)
    return opened


@contextlib.contextmanager
def _closing_import(client: httpx.Client, import_id: str | None, err: Console) -> Iterator[None]:
    """Close the import on the way out, whether the file went in or not."""
    import httpx

    try:
        yield
    finally:
        if import_id is not None:
            try:
                client.post(f"/imports/{import_id}/close").raise_for_status()
            except httpx.HTTPError as exc:
                # Not fatal: the hold runs out by itself.
                err.print(
                    f"--history: could not close the import ({exc.__class__.__name__}); "
                    "its messages fall due when its hold runs out"
                )


def _numbered(file: Path, shift: timedelta | None) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their numbers, moved in time when `shift` is given."""
    for numbers, lines in _batches(file, 1000):
        for number, line in zip(numbers, lines, strict=True):
            yield number, (_shifted(line, shift) if shift is not None else line).encode()


def _batches(file: Path, size: int) -> Iterator[tuple[list[int], list[str]]]:
    """Batches of non-blank lines, with their line numbers."""
    batch: list[str] = []
    numbers: list[int] = []
    with file.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            batch.append(line if line.endswith("\n") else line + "\n")
            numbers.append(number)
            if len(batch) == size:
                yield numbers, batch
                batch, numbers = [], []
    if batch:
        yield numbers, batch


def _results(response: httpx.Response) -> list[dict[str, object]] | None:
    """The per-event results of a /events answer, or None if it has none."""
    if response.status_code not in (202, 422):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    results = body.get("results") if isinstance(body, dict) else None
    return results if isinstance(results, list) else None


_TIMES = (
    ("occurred_at",),
    ("appointment", "start"),
    ("encounter", "admitted_at"),
    ("encounter", "discharged_at"),
)


def _shift(file: Path) -> timedelta:
    """How far to move the file's times for its latest event to happen now.

    Ending the stream now keeps every event in the past, as a real feed's
    are; what the care path still has to say (reminders for visits ahead,
    post-discharge follow-ups) then falls due over the coming days.
    """
    latest = None
    with file.open(encoding="utf-8") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                occurred = datetime.fromisoformat(read_json(line)["occurred_at"])
            except (InputError, ValueError, KeyError, TypeError):
                continue  # the service reports the line, with its field
            if occurred.tzinfo is not None and (latest is None or occurred > latest):
                latest = occurred
    if latest is None:
        raise typer.BadParameter("--shift-to-now needs events with an occurred_at and an offset")
    return SystemClock().now() - latest


def _shifted(line: str, shift: timedelta) -> str:
    """The event on `line` with its times moved by `shift`; other lines as they are."""
    try:
        data = read_json(line)
    except InputError:
        return line  # the service reports it, with its line number
    for path in _TIMES:
        holder = data
        for part in path[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        value = holder.get(path[-1]) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(value, str):
            # A bad time is left as it is, for the service to reject by its field name.
            with contextlib.suppress(ValueError):
                holder[path[-1]] = (datetime.fromisoformat(value) + shift).isoformat()
    return json.dumps(data) + "\n"
