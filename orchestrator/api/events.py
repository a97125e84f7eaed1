"""`POST /events` (one event, an array, or NDJSON) and the imports that hold what they schedule.

A body too large (413) or unreadable whole (400) is kept as one rejected
input; otherwise each document is parsed on its own and the batch goes to the
intake (source `api`), which keeps each refused document and answers one
result per document: 202 when any was taken, else 422.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import InputError, JsonError
from ..limits import read_json
from ..ports import ImportHold, Input
from ..runtime.intake import parse_document
from ..store import ImportHolds
from .bodies import head_of, read_limited
from .deps import Clock, Intake, Metrics, Settings, Store
from .params import StorableText
from .roles import Role, require_role

__all__ = ["close_import", "open_import", "post_events", "router"]

SOURCE = "api"

# Ingest is the admin's: the token that fed events before roles existed (ORCHESTRATOR_API_TOKEN).
router = APIRouter(dependencies=[Depends(require_role(Role.ADMIN))])


@router.post("/imports", status_code=201)
def open_import(store: Store, clock: Clock, settings: Settings) -> dict[str, str]:
    """Open an import: messages its batches schedule wait until it is closed."""
    opened = ImportHolds(store.transactions).open(
        clock.now(), timedelta(seconds=settings.import_hold_seconds)
    )
    return {"id": opened.import_id, "hold_until": opened.until.isoformat()}


@router.post("/imports/{import_id}/close")
def close_import(
    import_id: Annotated[StorableText, Path(max_length=40)], store: Store, clock: Clock
) -> dict[str, object]:
    """Close an import: what it held falls due when the engine made it due."""
    released = ImportHolds(store.transactions).close(import_id, clock.now())
    if released is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such import")
    return {"id": import_id, "released": released}


@router.post("/events", status_code=202)
async def post_events(
    request: Request,
    intake: Intake,
    store: Store,
    clock: Clock,
    settings: Settings,
    metrics: Metrics,
    import_id: Annotated[StorableText | None, Query(alias="import", max_length=40)] = None,
) -> JSONResponse:
    body = await read_limited(request, settings.max_body_bytes)
    if body is None:
        reason = f"body over the limit of {settings.max_body_bytes} bytes"
        head = await head_of(request)
        await run_in_threadpool(intake.take, SOURCE, [Input.refused(head, reason)])
        metrics.bodies_rejected.labels("too_large").inc()
        return JSONResponse({"error": reason}, 413)
    try:
        documents = _documents(body, request.headers.get("content-type", ""))
    except InputError as exc:
        await run_in_threadpool(intake.take, SOURCE, [Input.refused(body, str(exc))])
        metrics.bodies_rejected.labels("malformed").inc()
        return JSONResponse({"error": str(exc)}, status.HTTP_400_BAD_REQUEST)
    # The store and the engine are synchronous: keep them off the event loop.
    hold_for = timedelta(seconds=settings.import_hold_seconds)

    def accept() -> JSONResponse:
        hold: ImportHold | None = None
        if import_id is not None:
            # Renewed before the batch: what earlier batches scheduled stays held too.
            hold = ImportHolds(store.transactions).renew(import_id, clock.now(), hold_for)
            if hold is None:
                reason = "import not open: unknown, closed, or its hold ran out"
                return JSONResponse({"error": reason}, status.HTTP_409_CONFLICT)
        inputs = [_input(where, data, settings.default_region) for where, data in documents]
        results = [
            {"index": i, **result.as_json()}
            for i, result in enumerate(intake.take(SOURCE, inputs, hold=hold))
        ]
        for result in results:
            metrics.events_total.labels(str(result["status"])).inc()
        accepted = any(r["status"] != "rejected" for r in results)
        code = status.HTTP_202_ACCEPTED if accepted or not results else 422
        return JSONResponse({"results": results}, code)

    return await run_in_threadpool(accept)


def _input(where: str, data: Any, default_region: str) -> Input:
    if isinstance(data, _NotJSON):
        return Input.refused(data.line.encode(), f"{where}: {data.problem}", [data.problem])
    return parse_document(
        where, data, default_region=default_region, body=json.dumps(data).encode()
    )


def _documents(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    """Split a body into event documents: one object, an array, or NDJSON.

    Raises:
        InputError: the body is empty or not UTF-8; for a single document, a
            `JsonError`: not JSON, or not within the input limits (the body is
            refused whole: it cannot be split into events).
    """
    text = _decode(body)
    stripped = text.strip()
    if not stripped:
        raise InputError("body", ["empty; expected an event, an array of events or NDJSON"])
    ndjson = "ndjson" in content_type or "jsonl" in content_type
    if not ndjson:
        try:
            data = read_json(stripped)
        except JsonError as exc:
            if exc.kind != "syntax" or "\n" not in stripped:
                raise
            ndjson = True  # several JSON documents, one per line
        else:
            if isinstance(data, list):
                return [(f"item {i}", item) for i, item in enumerate(data)]
            return [("body", data)]
    # NDJSON: a line that is not JSON is rejected alone; the lines after it go on.
    documents: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            documents.append((where, read_json(line, where=where)))
        except JsonError as exc:
            documents.append((where, _NotJSON(line, exc.problems[0])))
    return documents


@dataclass(frozen=True, slots=True)
class _NotJSON:
    """An NDJSON line that did not parse, kept as it came."""

    line: str
    problem: str


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("body", [f"not UTF-8 (at byte {exc.start})"]) from None
