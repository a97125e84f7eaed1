"""`orchestrator simulate`: events through the runtime's processor and dispatcher on a virtual clock.

What a run needs (the flows, the runtime, pydantic, Jinja2) is imported when
it runs, so that `orchestrator --help` does not load it.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, TypeVar

import typer
from rich.console import Console

from ..gc_tuning import tune_for_throughput
from .options import DbOption, TemplatesOption, keep_templates_compiled, settings_with

if TYPE_CHECKING:
    from rich.table import Table

    from ..decisions import DecisionRecord
    from ..event import Event
    from ..flows.model import Flow
    from ..insight.compare import Comparison
    from ..settings import Settings
    from ..simulate import PlayOrder
    from ..templates import TemplateSet

# Below this many lines a progress bar is noise.
_PROGRESS_FROM_LINES = 2_000
T = TypeVar("T")


class OutputFormat(StrEnum):
    JSON = "json"
    TABLE = "table"


def _parse_until(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 time with an offset, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise typer.BadParameter("--until needs a UTC offset, e.g. 2026-03-10T00:00:00Z")
    return parsed


def simulate_command(
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", help="events, one JSON object per line", exists=True, dir_okay=False
        ),
    ] = None,
    flows_dir: Annotated[Path | None, typer.Option("--flows", help="flows directory")] = None,
    templates_dir: TemplatesOption = None,
    until: Annotated[
        str | None, typer.Option("--until", help="stop the virtual clock at this time")
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="json lines or a table")
    ] = OutputFormat.JSON,
    strict: Annotated[
        bool, typer.Option("--strict", help="stop at the first malformed line")
    ] = False,
    compare_dirs: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            help="two flow directories (before, after): print what the change adds, "
            "removes or moves, per patient, message and time, with a summary",
        ),
    ] = None,
    arrival_order: Annotated[
        bool,
        typer.Option(
            "--arrival-order",
            help="play the lines in file order, as a feed that delivers some events late "
            "would (default: in the order the events occurred)",
        ),
    ] = False,
    history_days: Annotated[
        int | None,
        typer.Option(
            "--history-days",
            min=1,
            help="with --compare, instead of --events: replay the store's last N days "
            "(up to now, or --until) under both flow directories",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Run events through the service's own processor and dispatcher on a virtual clock.

    Nothing is sent: the sandbox records. Prints one decision per line (JSON)
    or a table. The events play in the order they occurred, whatever the
    order of the lines; a file out of that order is said so on stderr.
    Malformed lines are reported on stderr with their line number; the rest
    still run, and the exit status is 1 when any line was rejected.

    With --compare and --history-days, the events are the store's own (--db):
    what the AFTER flows would have done over the last N days, against the
    BEFORE flows, per stage.
    """
    from ..errors import FlowError, InputError
    from ..event_schema import parse_event_json
    from ..flows.loader import load_flows
    from ..insight.compare import compare
    from ..runtime.rendering import Organisation
    from ..simulate import PlayOrder, as_run, simulate
    from ..template_check import TemplateCheck
    from ..templates import TemplateSet

    settings = settings_with(templates=templates_dir, db=db)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    stop = _parse_until(until)
    if history_days is not None and compare_dirs is None:
        raise typer.BadParameter("--history-days compares: give --compare BEFORE AFTER")
    if (history_days is None) == (events is None):
        raise typer.BadParameter("give --events FILE, or --history-days N with --compare")
    order = PlayOrder.ARRIVAL if arrival_order else PlayOrder.OCCURRED
    keep_templates_compiled(settings, err)
    templates = TemplateSet(settings.templates)
    check = TemplateCheck(templates, Organisation.of(settings))
    try:
        if compare_dirs is not None:
            before_flows = load_flows([compare_dirs[0]], check).flows
            flows = load_flows([compare_dirs[1]], check).flows
        else:
            flows = load_flows([flows_dir or settings.flows], check).flows
    except FlowError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(2) from None
    if history_days is not None:
        assert compare_dirs is not None
        comparison = _over_history(
            settings.db, before_flows, flows, templates, history_days, stop, settings, err
        )
        print_comparison(comparison, output is OutputFormat.JSON, compare_dirs)
        return
    assert events is not None
    rejected: list[int] = []

    def accepted(stream: Iterable[str]) -> Iterator[Event]:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield parse_event_json(line, default_region=settings.default_region)
            except InputError as exc:
                err.print(f"{events}:{number}: {exc}", markup=False)
                rejected.append(number)
                if strict:
                    return

    with events.open(encoding="utf-8") as stream:
        parsed = list(accepted(_progress(stream, events, err)))
    _warn_if_out_of_order(parsed, events, order, err)
    tune_for_throughput()  # flows and events are built: what follows is decisions
    # Decided as `run` decides with these settings: limits, and each sender's pace.
    options = as_run(settings)
    plays = 2 if compare_dirs is not None else 1
    counted = itertools.count(1)
    # JSON lines on a terminal are their own progress; a bar would break into them.
    streamed = output is OutputFormat.JSON and compare_dirs is None and sys.stdout.isatty()
    total = 0 if streamed else plays * len(parsed)
    with _playing(
        err, "simulating", total, lambda _: next(counted), _PROGRESS_FROM_LINES
    ) as played:

        def decided(under: Mapping[str, Flow]) -> Iterator[DecisionRecord]:
            return simulate(
                parsed, under, templates, stop, order=order, on_played=played, **options
            )

        if compare_dirs is not None:
            comparison = compare(decided(before_flows), decided(flows))
        elif output is OutputFormat.JSON:
            _run(decided(flows), output)
        else:
            records = list(decided(flows))
    if compare_dirs is not None:
        print_comparison(comparison, output is OutputFormat.JSON, compare_dirs)
    elif output is OutputFormat.TABLE:
        _run(records, output)
    if rejected:
        err.print(
            f"[red]{len(rejected)} line(s) rejected[/]"
            + (" (stopped at the first: --strict)" if strict else "")
        )
        raise typer.Exit(1)


def _over_history(
    url: str,
    running: Mapping[str, Flow],
    draft: Mapping[str, Flow],
    templates: TemplateSet,
    days: int,
    until: datetime | None,
    settings: Settings,
    err: Console,
) -> Comparison:
    """The draft against the running flows over the store's last `days` days."""
    # Imported here: a simulation of a file needs no database driver.
    from ..clock import SystemClock, VirtualClock
    from ..simulate import as_run
    from ..whatif import draft_vs_running
    from .stores import opened_store

    # One instant for the window and the bar: the replay ends where the bar does.
    end = until if until is not None else SystemClock().now()
    start = end - timedelta(days=days)
    window = (end - start).total_seconds()

    def replayed(event: Event) -> float:
        return (event.occurred_at - start).total_seconds()

    with (
        opened_store(url, err) as store,
        _playing(err, f"replaying {days} day(s)", window, replayed, 0) as played,
    ):
        return draft_vs_running(
            store,
            running,
            draft,
            templates,
            days,
            clock=VirtualClock(end),
            on_played=played,
            **as_run(settings),
        )


def _warn_if_out_of_order(
    events: Sequence[Event], path: Path, order: PlayOrder, err: Console
) -> None:
    from ..simulate import PlayOrder, out_of_order

    late = out_of_order(events)
    if not late:
        return
    played = (
        "played in file order (--arrival-order): they arrive late"
        if order is PlayOrder.ARRIVAL
        else "played in the order they occurred (--arrival-order keeps the file's order)"
    )
    err.print(
        f"[yellow]warning:[/] {path}: {late} of {len(events)} event(s) occurred earlier "
        f"than a line before them; {played}",
        highlight=False,
    )


def _run(records: Iterable[DecisionRecord], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        for record in records:
            sys.stdout.write(json.dumps(record.as_json()) + "\n")
    else:
        out = Console()
        if not out.is_terminal:
            out = Console(width=200)  # a file or pipe: no terminal width to fit
        out.print(_table(list(records)))


def print_comparison(comparison: Comparison, as_json: bool, dirs: tuple[Path, Path]) -> None:
    """The changes per patient, message and time, then the summary."""
    from rich.table import Table

    from ..insight.compare import KINDS

    summary = comparison.summary
    if as_json:
        for change in comparison.changes:
            sys.stdout.write(json.dumps(change.as_json()) + "\n")
        stages = comparison.as_json()["stages"]
        line = {"summary": dict(summary), "unchanged": comparison.unchanged, "stages": stages}
        sys.stdout.write(json.dumps(line) + "\n")
        return
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title=f"{dirs[0]} -> {dirs[1]}: {len(comparison.changes)} changes")
    for column in (
        "change",
        "patient",
        "flow",
        "stage",
        "message",
        "to",
        "due before (UTC)",
        "due after (UTC)",
        "outcome before",
        "outcome after",
    ):
        table.add_column(column)
    for change in comparison.changes:
        i = change.instance
        b, a = change.before, change.after
        table.add_row(
            change.kind,
            i.patient_id,
            i.flow,
            i.stage,
            i.message,
            i.recipient,
            f"{b.due_at:%Y-%m-%d %H:%M}" if b else "",
            f"{a.due_at:%Y-%m-%d %H:%M}" if a else "",
            b.outcome if b else "",
            a.outcome if a else "",
        )
    out.print(table)
    per_message = Table(title="per message")
    for column in ("flow", "message", "change", "count"):
        per_message.add_column(column, justify="right" if column == "count" else "left")
    for (flow, message, kind), count in comparison.by_message().items():
        per_message.add_row(flow, message, kind, str(count))
    per_stage = Table(title="per stage")
    per_stage.add_column("flow")
    per_stage.add_column("stage")
    for kind in KINDS:
        per_stage.add_column(kind, justify="right")
    for (flow, stage), counts in comparison.by_stage().items():
        per_stage.add_row(flow, stage, *(str(counts[kind]) for kind in KINDS))
    if comparison.changes:
        out.print(per_message)
        out.print(per_stage)
    out.print(
        ", ".join(f"{n} {kind}" for kind, n in summary.items())
        + f", {comparison.unchanged} unchanged",
        markup=False,
    )


@contextmanager
def _playing(
    err: Console, label: str, total: float, done: Callable[[T], float], least: float
) -> Iterator[Callable[[T], None] | None]:
    """A progress bar on a terminal, at `done(item)` of `total` after each item
    (an event played, a line read).

    None (no bar) in a pipe or file, or when `total` is under `least`.
    """
    if not err.is_terminal or total < least:
        yield None
        return
    from rich.progress import Progress

    # Standard output stays where it goes (a pipe, say): rich would print it on stderr.
    with Progress(console=err, transient=True, redirect_stdout=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda item: progress.update(task, completed=done(item))


def _progress(stream: TextIO, path: Path, err: Console) -> Iterator[str]:
    """The lines of `stream`, with a bar over the file's lines while they are read."""
    total = 0
    if err.is_terminal:
        with path.open("rb") as counting:
            total = sum(1 for _ in counting)
    read = itertools.count(1)
    with _playing(err, "reading", total, lambda _: next(read), _PROGRESS_FROM_LINES) as advance:
        for line in stream:
            yield line
            if advance is not None:
                advance(line)


_STATUS_STYLE = {
    "sent": "green",
    "delivered": "green",
    "scheduled": "cyan",
    "cancelled": "yellow",
    "suppressed": "magenta",
    "expired": "magenta",
    "failed": "red",
}


def _table(records: list[DecisionRecord]) -> Table:
    from rich.table import Table

    table = Table(title=f"{len(records)} message decisions", show_lines=False)
    for column in (
        "at (UTC)",
        "patient",
        "flow",
        "stage",
        "message",
        "to",
        "channel",
        "lang",
        "due (UTC)",
        "status",
        "reason",
    ):
        table.add_column(column, no_wrap=column in ("at (UTC)", "due (UTC)"))
    for r in records:
        style = _STATUS_STYLE.get(r.status, "")
        table.add_row(
            f"{r.at:%Y-%m-%d %H:%M}",
            r.patient_id,
            r.flow,
            r.stage,
            r.message,
            r.recipient,
            r.channel or "",
            r.language or "",
            f"{r.due_at:%Y-%m-%d %H:%M}",
            f"[{style}]{r.status}[/]" if style else r.status,
            r.reason or "",
        )
    return table
