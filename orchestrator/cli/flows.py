"""`orchestrator flows validate | schema | preview | export`.

Each command imports what it uses when it runs, so that `--help` loads no
YAML, pydantic or Jinja2. `preview` imports only what rendering needs (flows,
Jinja2, Babel): the store and the connectors are loaded for `--send-to-test`
alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ..errors import FlowError, OrchestratorError
from ..event import Channel
from .options import (
    DbOption,
    FlowsOption,
    TemplatesOption,
    exit_on_startup_errors,
    keep_templates_compiled,
    settings_with,
)

if TYPE_CHECKING:
    from ..flows.model import Flow
    from ..ports import EventResult, ImportHold, Input, RecordedTestSend
    from ..preview import FlowPreview, MessagePreview
    from ..settings import Settings
    from ..template_check import TemplateCheck

app = typer.Typer(
    help="Validate flow files, print their schema, preview their messages, export published ones.",
    no_args_is_help=True,
)


@app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="flow files or directories")] = None,
    templates: Annotated[
        Path | None, typer.Option("--templates", help="templates directory")
    ] = None,
    flows_dir: Annotated[Path | None, typer.Option("--flows", help="flows directory")] = None,
) -> None:
    """Validate flow files and the templates they use; exit 1 listing every problem."""
    from ..flows.loader import flow_paths, load_flows
    from ..runtime.rendering import Organisation
    from ..template_check import TemplateCheck
    from ..templates import TemplateSet

    settings = settings_with()
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    keep_templates_compiled(settings, err)
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
        check = TemplateCheck(
            TemplateSet(templates or settings.templates), Organisation.of(settings)
        )
        loaded = load_flows(files, check)
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
    from ..flows.schema import flow_json_schema

    typer.echo(json.dumps(flow_json_schema(), indent=2))


@app.command("export")
def export_command(
    flow: Annotated[str, typer.Argument(help="flow id")],
    db: DbOption = None,
    flows_dir: FlowsOption = None,
    templates_dir: TemplatesOption = None,
) -> None:
    """Write a flow's newest version in the store (published in the console) to the flow file
    and its templates to the templates directory (flows as code)."""
    # Imported here: the other commands need no database driver.
    from ..service.drafts import SharedTemplate, export
    from ..store import connect, pending
    from ..store.published import Published
    from ..store.transactions import Transactions

    settings = settings_with(db=db, flows=flows_dir, templates=templates_dir)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    with exit_on_startup_errors(err):
        engine = connect(settings.db)
        try:
            if pending(engine):
                err.print("the store's schema is behind: run `orchestrator db upgrade`")
                raise typer.Exit(2)
            written = export(
                Published(Transactions(engine)), flow, settings.flows, settings.templates
            )
        except KeyError:
            err.print(f"the store has no version of flow '{flow}'", markup=False)
            raise typer.Exit(1) from None
        except SharedTemplate as exc:
            err.print(f"nothing written: {exc}", markup=False)
            raise typer.Exit(1) from None
        finally:
            engine.dispose()
    for path in written:
        out.print(f"wrote {path}", markup=False, highlight=False)


class PreviewFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command("preview")
def preview_command(
    flow: Annotated[str, typer.Argument(help="flow id (in the flows directory) or flow file")],
    message: Annotated[str | None, typer.Option("--message", help="one message id")] = None,
    language: Annotated[str | None, typer.Option("--language", help="one language")] = None,
    channel: Annotated[Channel | None, typer.Option("--channel", help="one channel")] = None,
    persona: Annotated[
        str | None, typer.Option("--persona", help="as a patient of this persona")
    ] = None,
    output: Annotated[
        PreviewFormat | None,
        typer.Option("--format", help="table (default on a terminal) or json"),
    ] = None,
    send_to_test: Annotated[
        bool,
        typer.Option(
            "--send-to-test",
            help="send the message (--message) to ORCHESTRATOR_TEST_PHONE / _TEST_EMAIL",
        ),
    ] = False,
    flows_dir: FlowsOption = None,
    templates: TemplatesOption = None,
    db: DbOption = None,
) -> None:
    """Render a flow's messages for a sample patient: every language x channel, SMS segments,
    encoding and the characters that forced UCS-2."""
    from ..preview import PreviewError, render_all
    from ..runtime.rendering import Organisation
    from ..template_check import TemplateCheck
    from ..templates import TemplateSet

    settings = settings_with(flows=flows_dir, templates=templates, db=db)
    err = Console(stderr=True, soft_wrap=True)
    template_set = TemplateSet(settings.templates)
    org = Organisation.of(settings)
    found = _flow(flow, settings.flows, TemplateCheck(template_set, org), err)
    if send_to_test:
        if message is None:
            err.print("--send-to-test needs --message: a test send is one message")
            raise typer.Exit(2)
        # One send: the flow's default language and the message's first channel unless given.
        language = language or found.default_language
        if channel is None:
            spec = found.specs.get(message)
            channel = spec[1].for_persona(persona).channels[0] if spec else None
    try:
        rendered = render_all(
            found,
            template_set,
            org,
            message=message,
            language=language,
            channel=channel,
            persona=persona,
        )
    except PreviewError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    as_json = (output or _default_format()) is PreviewFormat.JSON
    sent: list[RecordedTestSend] = []
    if send_to_test:
        try:
            sent = _send_to_test(settings, rendered.messages[:1])
        except OrchestratorError as exc:
            err.print(f"test send: {exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None
    if as_json:
        data = rendered.to_json()
        if send_to_test:
            data["test_sends"] = [s.to_json() for s in sent]
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_table(rendered)
        for s in sent:
            Console(soft_wrap=True).print(
                f"[green]test send[/] {s.message_id} ({s.language}, {s.channel.value}) "
                f"to the test recipient: {s.provider_id}",
                highlight=False,
            )
    if any(m.error for m in rendered.messages):
        raise typer.Exit(1)


def _default_format() -> PreviewFormat:
    return PreviewFormat.TABLE if sys.stdout.isatty() else PreviewFormat.JSON


def _flow(name: str, flows_dir: Path, templates: TemplateCheck, err: Console) -> Flow:
    """The flow named by id in `flows_dir`, or by its file."""
    from ..flows.loader import flow_paths, load_flows

    path = Path(name)
    targets = [path] if path.suffix in (".yaml", ".yml") and path.is_file() else [flows_dir]
    try:
        loaded = load_flows(flow_paths(targets), templates)
    except FlowError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, highlight=False)
        raise typer.Exit(1) from None
    if targets == [path]:
        return next(iter(loaded.flows.values()))
    if name not in loaded.flows:
        known = ", ".join(sorted(loaded.flows)) or "none"
        err.print(f"no flow '{name}' in {flows_dir} (flows: {known})", markup=False)
        raise typer.Exit(1)
    return loaded.flows[name]


def _print_table(rendered: FlowPreview) -> None:
    from rich.table import Table

    table = Table(title=f"{rendered.flow_id} v{rendered.flow_version}", show_lines=True)
    table.add_column("message", overflow="fold", max_width=24)
    for column in ("lang", "channel", "seg", "enc"):
        table.add_column(column, no_wrap=True)
    table.add_column("forced UCS-2", max_width=14)
    table.add_column("body", overflow="fold", min_width=30, ratio=1)
    for m in rendered.messages:
        name = m.message_id + (f" ({m.persona})" if m.persona else "")
        table.add_row(name, m.language, m.channel.value, *_sms_cells(m), _body_cell(m))
    Console(soft_wrap=False).print(table)


_ENCODING_NAMES = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


def _sms_cells(m: MessagePreview) -> tuple[str, str, str]:
    if m.sms is None:
        return "", "", ""
    forced = ", ".join(f"{f.character!r}@{f.position}" for f in m.sms.forcing)
    return str(m.sms.segments), _ENCODING_NAMES[m.sms.encoding], forced


def _body_cell(m: MessagePreview) -> str:
    from rich.markup import escape

    if m.error is not None:
        return f"[red]{escape(m.error)}[/]"
    text = escape(m.body if m.subject is None else f"Subject: {m.subject}\n\n{m.body}")
    if m.sms is not None and m.sms.suggestion is not None:
        text += (
            f"\n[dim]GSM-7 form ({m.sms.suggestion_segments} segment(s)):[/] "
            f"{escape(m.sms.suggestion)}"
        )
    return text


class _NoEvents:
    """The intake for what a provider says about a test send: it belongs to no patient."""

    def take(
        self, source: str, inputs: Sequence[Input], *, hold: ImportHold | None = None
    ) -> Sequence[EventResult]:
        return ()


def _send_to_test(settings: Settings, previews: Sequence[MessagePreview]) -> list[RecordedTestSend]:
    """Send through the runtime's connectors (the sandbox unless credentials are set)."""
    from ..clock import SystemClock
    from ..errors import StoreError
    from ..preview import TestRecipient, test_send
    from ..service.runtime import connectors_for
    from ..store import SqlStore, TestSendLedger, connect, pending

    recipient = TestRecipient(settings.test_phone, settings.test_email)
    for preview in previews:
        recipient.address(preview.channel)  # refused before the store is opened
    engine = connect(settings.db)
    try:
        if pending(engine):
            raise StoreError("the store's schema is behind: run `orchestrator db upgrade`")
        store, clock = SqlStore(engine), SystemClock()
        connectors, _ = connectors_for(settings, store, clock, _NoEvents())
        return [
            test_send(
                preview,
                recipient=recipient,
                connectors=connectors,
                record=TestSendLedger(store.transactions),
                clock=clock,
            )
            for preview in previews
        ]
    finally:
        engine.dispose()
