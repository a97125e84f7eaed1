"""FHIR R4 inbound routes: `POST /fhir/Appointment`, `POST /fhir/Encounter`, `POST /fhir`.

Each body is kept in the inbound archive before it is parsed. What cannot be
used is kept in the rejected inputs and answered with an OperationOutcome
naming the element by FHIRPath (400 malformed, 422 not supported). A Bundle
of type transaction is all or nothing; batch, history and
subscription-notification bundles are taken entry by entry, and the answer
is a `*-response` Bundle with an outcome per entry.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
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

from ..errors import JsonError, StoreError
from ..event import Event
from ..limits import read_json
from ..runtime.service import EmbeddedService
from ..store import InboundArchive, Settlement
from .bodies import head_of, read_limited

__all__ = ["fhir_router"]

FHIR_JSON = "application/fhir+json"


def _outcome(error: FhirError | list[Issue], status: int, severity: str = "error") -> JSONResponse:
    return JSONResponse(operation_outcome(error, severity), status, media_type=FHIR_JSON)


def fhir_router(service: EmbeddedService) -> APIRouter:
    """The FHIR routes over a built service (the app adds its token check)."""
    router = APIRouter(prefix="/fhir", tags=["fhir"])
    settings = service.settings
    config = FhirConfig(
        services=dict(settings.inbound_services), default_region=settings.default_region
    )
    archive = InboundArchive(service.store)

    async def body_of(request: Request) -> bytes | JSONResponse:
        body = await read_limited(request, settings.max_body_bytes)
        if body is None:
            reason = f"body over {settings.max_body_bytes} bytes"
            head = await head_of(request)
            await run_in_threadpool(service.store.reject, head, "fhir", reason, service.clock.now())
            return _outcome([Issue("", "too-costly", reason)], 413)
        return body

    @router.post("/Appointment")
    async def post_appointment(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        return await run_in_threadpool(take_resource, body, "Appointment")

    @router.post("/Encounter")
    async def post_encounter(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        return await run_in_threadpool(take_resource, body, "Encounter")

    @router.post("")
    async def post_bundle(request: Request) -> JSONResponse:
        body = await body_of(request)
        if isinstance(body, JSONResponse):
            return body
        return await run_in_threadpool(take_bundle, body)

    def keep(body: bytes) -> int:
        return archive.keep("fhir", [body], service.clock.now())[0]

    def refuse(body: bytes, row: int, error: FhirError) -> JSONResponse:
        reason = "; ".join(error.problems)
        service.store.reject(body, "fhir", reason, service.clock.now())
        archive.settle([Settlement(row, "rejected", None, reason)])
        return _outcome(error, error.status)

    def take_resource(body: bytes, kind: str) -> JSONResponse:
        try:
            row = keep(body)
        except StoreError:
            return _outcome([Issue("", "transient", "the store is unavailable; retry")], 503)
        try:
            event = resource_event(_json(body), config, service.clock.now(), expected=kind)
        except FhirError as exc:
            return refuse(body, row, exc)
        result = service.processor.process([event])[0]
        if result.status == "rejected":
            return refuse(
                body,
                row,
                FhirError([Issue(kind, "exception", e) for e in result.errors], status=422),
            )
        archive.settle([Settlement(row, result.status, event.id)])
        note = Issue("", "informational", f"{result.status}: event {event.id}")
        return _outcome([note], 200, "information")

    def take_bundle(body: bytes) -> JSONResponse:
        try:
            row = keep(body)
        except StoreError:
            return _outcome([Issue("", "transient", "the store is unavailable; retry")], 503)
        try:
            kind, entries = bundle_events(_json(body), config, service.clock.now())
        except FhirError as exc:
            return refuse(body, row, exc)
        failed = [e.error for e in entries if e.error is not None]
        if kind == "transaction" and failed:
            issues = [i for error in failed for i in error.issues]
            return refuse(body, row, FhirError(issues, status=max(e.status for e in failed)))
        events: list[Event] = [e.event for e in entries if e.event is not None]
        results = iter(service.processor.process(events) if events else [])
        response = [_entry_response(e, next(results) if e.event else None) for e in entries]
        reason = "; ".join(p for e in failed for p in e.problems) or None
        status = "accepted"
        if failed:
            # The entries that failed are kept with the body; the others went on.
            service.store.reject(body, "fhir", reason or "", service.clock.now())
            status = "partial" if events else "rejected"
        archive.settle([Settlement(row, status, None, reason)])
        answer = {
            "resourceType": "Bundle",
            "type": "transaction-response" if kind == "transaction" else "batch-response",
            "entry": response,
        }
        return JSONResponse(answer, 200, media_type=FHIR_JSON)

    return router


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
