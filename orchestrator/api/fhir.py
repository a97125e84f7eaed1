"""FHIR R4 inbound routes: `POST /fhir/Appointment`, `POST /fhir/Encounter`, `POST /fhir`.

Each body is kept in the inbound archive before it is parsed. What cannot be
used is kept in the rejected inputs and answered with an OperationOutcome
naming the element by FHIRPath (400 malformed, 422 not supported). A Bundle
of type transaction is all or nothing; batch, history and
subscription-notification bundles are taken entry by entry, and the answer
is a `*-response` Bundle with an outcome per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from connectors.fhir import (
    EntryResult,
    FhirConfig,
    FhirError,
    Issue,
    bundle_events,
    operation_outcome,
    resource_event,
)

from ..clock import Clock as ClockPort
from ..errors import JsonError, StoreError
from ..event import Event
from ..limits import read_json
from ..ports import EventIntake, Input
from ..store import InboundArchive, Settlement
from .bodies import head_of, read_limited
from .deps import Clock, Intake, Settings, Store
from .roles import Role, require_role

__all__ = ["post_appointment", "post_bundle", "post_encounter", "router"]

SOURCE = "fhir"

FHIR_JSON = "application/fhir+json"


def _outcome(error: FhirError | list[Issue], status: int, severity: str = "error") -> JSONResponse:
    return JSONResponse(operation_outcome(error, severity), status, media_type=FHIR_JSON)


@dataclass
class _Door:
    """What the FHIR routes use: the intake, the inbound archive, the clock and the mapping."""

    intake: EventIntake
    archive: InboundArchive
    clock: ClockPort
    config: FhirConfig
    max_body: int

    async def body_of(self, request: Request) -> bytes | JSONResponse:
        body = await read_limited(request, self.max_body)
        if body is None:
            reason = f"body over {self.max_body} bytes"
            head = await head_of(request)
            await run_in_threadpool(self.intake.take, SOURCE, [Input.refused(head, reason)])
            return _outcome([Issue("", "too-costly", reason)], 413)
        return body

    def keep(self, body: bytes) -> int:
        return self.archive.keep("fhir", [body], self.clock.now())[0]

    def refuse(self, body: bytes, row: int, error: FhirError) -> JSONResponse:
        reason = "; ".join(error.problems)
        self.intake.take(SOURCE, [Input.refused(body, reason)])
        self.archive.settle([Settlement(row, "rejected", None, reason)])
        return _outcome(error, error.status)

    def take_resource(self, body: bytes, kind: str) -> JSONResponse:
        try:
            row = self.keep(body)
        except StoreError:
            return _outcome([Issue("", "transient", "the store is unavailable; retry")], 503)
        try:
            event = resource_event(_json(body), self.config, self.clock.now(), expected=kind)
        except FhirError as exc:
            return self.refuse(body, row, exc)
        # Kept by the intake (with this body) when the processor rejects it.
        result = self.intake.take(SOURCE, [Input(body, event)])[0]
        if result.status == "rejected":
            error = FhirError([Issue(kind, "exception", e) for e in result.errors], status=422)
            self.archive.settle([Settlement(row, "rejected", None, "; ".join(error.problems))])
            return _outcome(error, error.status)
        self.archive.settle([Settlement(row, result.status, event.id)])
        note = Issue("", "informational", f"{result.status}: event {event.id}")
        return _outcome([note], 200, "information")

    def take_bundle(self, body: bytes) -> JSONResponse:
        try:
            row = self.keep(body)
        except StoreError:
            return _outcome([Issue("", "transient", "the store is unavailable; retry")], 503)
        try:
            kind, entries = bundle_events(_json(body), self.config, self.clock.now())
        except FhirError as exc:
            return self.refuse(body, row, exc)
        failed = [e.error for e in entries if e.error is not None]
        if kind == "transaction" and failed:
            issues = [i for error in failed for i in error.issues]
            return self.refuse(body, row, FhirError(issues, status=max(e.status for e in failed)))
        events: list[Event] = [e.event for e in entries if e.event is not None]
        reason = "; ".join(p for e in failed for p in e.problems) or None
        # The body once for the entries that failed; each event the processor
        # rejects is kept as its own canonical JSON.
        inputs = [Input.refused(body, reason)] if reason is not None else []
        results = self.intake.take(SOURCE, inputs + [Input(None, e) for e in events])
        taken = iter(results[len(inputs) :])
        response = [_entry_response(e, next(taken) if e.event else None) for e in entries]
        status = "accepted"
        if failed:
            status = "partial" if events else "rejected"
        self.archive.settle([Settlement(row, status, None, reason)])
        answer = {
            "resourceType": "Bundle",
            "type": "transaction-response" if kind == "transaction" else "batch-response",
            "entry": response,
        }
        return JSONResponse(answer, 200, media_type=FHIR_JSON)


def _door(intake: Intake, store: Store, clock: Clock, settings: Settings) -> _Door:
    config = FhirConfig(
        services=dict(settings.inbound_services), default_region=settings.default_region
    )
    return _Door(intake, InboundArchive(store), clock, config, settings.max_body_bytes)


_TheDoor = Annotated[_Door, Depends(_door)]

router = APIRouter(prefix="/fhir", tags=["fhir"], dependencies=[Depends(require_role(Role.ADMIN))])


@router.post("/Appointment")
async def post_appointment(request: Request, door: _TheDoor) -> JSONResponse:
    body = await door.body_of(request)
    if isinstance(body, JSONResponse):
        return body
    return await run_in_threadpool(door.take_resource, body, "Appointment")


@router.post("/Encounter")
async def post_encounter(request: Request, door: _TheDoor) -> JSONResponse:
    body = await door.body_of(request)
    if isinstance(body, JSONResponse):
        return body
    return await run_in_threadpool(door.take_resource, body, "Encounter")


@router.post("")
async def post_bundle(request: Request, door: _TheDoor) -> JSONResponse:
    body = await door.body_of(request)
    if isinstance(body, JSONResponse):
        return body
    return await run_in_threadpool(door.take_bundle, body)


def _entry_response(entry: EntryResult, result: Any) -> dict[str, Any]:
    if entry.error is not None:
        return {
            "response": {
                "status": str(entry.error.status),
                "outcome": operation_outcome(entry.error),
            }
        }
    if entry.event is None:
        return {"response": {"status": "200 OK"}}
    if result.status == "rejected":
        issues = [Issue(f"Bundle.entry[{entry.index}]", "exception", e) for e in result.errors]
        return {"response": {"status": "422", "outcome": operation_outcome(issues)}}
    return {
        "response": {
            "status": "201 Created" if result.status == "accepted" else "200 OK",
            "outcome": operation_outcome(
                [Issue("", "informational", f"{result.status}: event {entry.event.id}")],
                "information",
            ),
        }
    }


def _json(body: bytes) -> Any:
    try:
        return read_json(body)
    except JsonError as exc:
        code = "too-costly" if exc.kind == "depth" else "structure"
        raise FhirError([Issue("", code, p) for p in exc.problems]) from None
