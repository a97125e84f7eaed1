"""`orchestrator convert --from hl7v2|fhir FILE`: what a file of messages becomes.

One canonical event per JSON line on stdout; each message that cannot be
converted is reported on stderr by its index (and line), segment and field,
or FHIRPath, and the exit status is then 1. Nothing is stored or sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from .options import settings_with

if TYPE_CHECKING:
    from ..event import Event

__all__ = ["convert_command"]


class Source(StrEnum):
    HL7V2 = "hl7v2"
    FHIR = "fhir"


def convert_command(
    file: Annotated[Path, typer.Argument(help="the messages", exists=True, dir_okay=False)],
    source: Annotated[Source, typer.Option("--from", help="what the file holds")],
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="facility time zone for HL7 times without an offset"),
    ] = None,
) -> None:
    """Print the canonical events a file of HL7 v2 messages or FHIR resources becomes."""
    # Imported here, as in every command: the FHIR models alone take a second to load.
    from ..event_schema import dump_event

    settings = settings_with(hl7_timezone=timezone)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    failures = 0
    converted = _hl7(file, settings) if source is Source.HL7V2 else _fhir(file, settings)
    for item in converted:
        if isinstance(item, str):
            err.print(item, markup=False)
            failures += 1
        else:
            typer.echo(json.dumps(dump_event(item)))
    if failures:
        raise typer.Exit(1)


def _hl7(file: Path, settings: Any) -> Iterator[Event | str]:
    from connectors.hl7_message import Hl7Error
    from connectors.hl7v2 import split_messages, to_event

    from ..service.hl7_settings import hl7_config

    config = hl7_config(settings)
    for index, (line, text) in enumerate(split_messages(file.read_bytes()), start=1):
        try:
            yield to_event(text, config)
        except Hl7Error as exc:
            yield f"{file}: message {index} (line {line}): {exc.location}: {exc.problem}"


def _fhir(file: Path, settings: Any) -> Iterator[Event | str]:
    from connectors.fhir import FhirConfig, FhirError, bundle_events, resource_event

    from ..clock import SystemClock
    from ..errors import JsonError
    from ..limits import read_json

    config = FhirConfig(
        services=dict(settings.inbound_services), default_region=settings.default_region
    )
    now = SystemClock().now()
    raw = file.read_bytes().decode("utf-8-sig", errors="replace")
    documents: list[tuple[int, Any]] = []
    try:
        documents = [(1, read_json(raw))]
    except JsonError as exc:
        if exc.kind != "syntax":
            yield f"{file}: {exc.problems[0]}"
        else:
            for number, line in enumerate(raw.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    documents.append((number, read_json(line, where=f"line {number}")))
                except JsonError as bad:
                    yield f"{file}: {bad}"
    for index, (start, data) in enumerate(documents, start=1):
        where = f"{file}: resource {index} (line {start})"
        try:
            if isinstance(data, dict) and data.get("resourceType") == "Bundle":
                _, entries = bundle_events(data, config, now)
                for entry in entries:
                    if entry.event is not None:
                        yield entry.event
                    elif entry.error is not None:
                        yield f"{where}: " + "; ".join(entry.error.problems)
            else:
                yield resource_event(data, config, now)
        except FhirError as exc:
            yield f"{where}: " + "; ".join(exc.problems)
