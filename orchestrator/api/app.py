"""The HTTP service (FastAPI): event ingest, imports, health, metrics, timelines, audit, outbox.

`create_app` takes a built `EmbeddedService`; it reads no settings of its
own. Every route but the health checks and the signature-checked webhooks
needs the bearer token whenever one is set, the OpenAPI pages included.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from ..errors import InputError, JsonError, StoreError, UnstorableError
from ..event import Event, bound_id
from ..event_schema import parse_event
from ..limits import read_json, unsafe_text
from ..ports import EpisodeView, MessageView
from ..runtime.service import DispatchLoop, EmbeddedService
from ..store import ImportHold, ImportHolds, pending
from .bodies import head_of, read_limited
from .dashboard import dashboard_router
from .fhir import fhir_router
from .params import Instant, StorableText
from .webhooks import webhook_router

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class _MessageStatusCollector(Collector):
    """Scheduled messages by status, read from the store at scrape time."""

    def __init__(self, service: EmbeddedService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "orchestrator_messages", "Scheduled messages by status", labels=["status"]
        )
        try:
            for name, count in sorted(self.service.store.message_statuses().items()):
                family.add_metric([name], count)
        except StoreError:
            pass  # /readyz reports the store; a scrape still returns the counters
        yield family


def create_app(service: EmbeddedService, *, run_dispatcher: bool = True) -> FastAPI:
    """The FastAPI application over a built service.

    With `run_dispatcher`, the dispatch loop starts and stops with the app
    (SIGTERM: uvicorn ends the lifespan, the loop finishes its message).
    """
    settings = service.settings
    # `is not None`: an empty SecretStr is falsy (the settings refuse one; this stays exact).
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    registry = CollectorRegistry()
    events_total = Counter(
        "orchestrator_events", "Events received, by result", ["result"], registry=registry
    )
    bodies_rejected = Counter(
        "orchestrator_rejected_bodies",
        "Request bodies rejected whole",
        ["reason"],
        registry=registry,
    )
    up = Gauge("orchestrator_up", "1 while the service runs", registry=registry)
    registry.register(_MessageStatusCollector(service))
    up.set(1)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        loop = DispatchLoop(service.dispatcher, settings.dispatch_poll_seconds)
        if run_dispatcher:
            loop.start()
        try:
            yield
        finally:
            loop.stop()

    app = FastAPI(
        title="Patient communication orchestrator",
        version="1",
        lifespan=lifespan,
        description="Care-path events in; stage-appropriate SMS and email out.",
        # With a token, the API's description is served behind it too (below).
        docs_url=None if token is not None else "/docs",
        redoc_url=None if token is not None else "/redoc",
        openapi_url=None if token is not None else "/openapi.json",
    )

    @app.exception_handler(UnstorableError)
    async def unstorable(_: Request, exc: UnstorableError) -> JSONResponse:
        # The safety net behind every route's own checks: a value the store
        # refused is the client's, a 400, never a 500.
        return JSONResponse({"error": f"a value the store cannot hold ({exc.reason})"}, 400)

    def require_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    protected = [Depends(require_token)]
    if token is not None:
        _guarded_docs(app, protected)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            service.store.ping()
            behind = pending(service.store.engine)
        except StoreError as exc:
            return JSONResponse({"status": "unavailable", "store": exc.__class__.__name__}, 503)
        if behind:
            return JSONResponse({"status": "unavailable", "store": "migrations pending"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=protected)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    imports = ImportHolds(service.store.transactions)
    hold_for = timedelta(seconds=settings.import_hold_seconds)

    @app.post("/imports", status_code=201, dependencies=protected)
    def open_import() -> dict[str, str]:
        """Open an import: messages its batches schedule wait until it is closed."""
        opened = imports.open(service.clock.now(), hold_for)
        return {"id": opened.import_id, "hold_until": opened.until.isoformat()}

    @app.post("/imports/{import_id}/close", dependencies=protected)
    def close_import(import_id: Annotated[StorableText, Path(max_length=40)]) -> dict[str, object]:
        """Close an import: what it held falls due when the engine made it due."""
        released = imports.close(import_id, service.clock.now())
        if released is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such import")
        return {"id": import_id, "released": released}

    @app.post("/events", status_code=202, dependencies=protected)
    async def post_events(
        request: Request,
        import_id: Annotated[StorableText | None, Query(alias="import", max_length=40)] = None,
    ) -> JSONResponse:
        body = await read_limited(request, settings.max_body_bytes)
        now = service.clock.now()
        if body is None:
            reason = f"body over the limit of {settings.max_body_bytes} bytes"
            head = await head_of(request)
            await run_in_threadpool(service.store.reject, head, "api", reason, now)
            bodies_rejected.labels("too_large").inc()
            return JSONResponse({"error": reason}, 413)
        try:
            documents = _documents(body, request.headers.get("content-type", ""))
        except InputError as exc:
            await run_in_threadpool(service.store.reject, body, "api", str(exc), now)
            bodies_rejected.labels("malformed").inc()
            return JSONResponse({"error": str(exc)}, status.HTTP_400_BAD_REQUEST)
        # The store and the engine are synchronous: keep them off the event loop.
        return await run_in_threadpool(_accept, documents, import_id)

    def _accept(documents: list[tuple[str, Any]], import_id: str | None) -> JSONResponse:
        now = service.clock.now()
        hold: ImportHold | None = None
        if import_id is not None:
            # Renewed before the batch: what earlier batches scheduled stays held too.
            hold = imports.renew(import_id, now, hold_for)
            if hold is None:
                reason = "import not open: unknown, closed, or its hold ran out"
                return JSONResponse({"error": reason}, status.HTTP_409_CONFLICT)
        parsed: list[tuple[int, Event]] = []
        results: list[dict[str, object] | None] = [None] * len(documents)
        for i, (where, data) in enumerate(documents):
            if isinstance(data, _NotJSON):
                service.store.reject(data.line.encode(), "api", f"{where}: {data.problem}", now)
                results[i] = {
                    "index": i,
                    "id": None,
                    "status": "rejected",
                    "errors": [data.problem],
                }
                continue
            try:
                parsed.append((i, parse_event(data, default_region=settings.default_region)))
            except InputError as exc:
                service.store.reject(json.dumps(data).encode(), "api", f"{where}: {exc}", now)
                results[i] = {
                    "index": i,
                    "id": _id_of(data),
                    "status": "rejected",
                    "errors": list(exc.problems),
                }
        if parsed:
            for (i, _), outcome in zip(
                parsed, service.processor.process([e for _, e in parsed], hold=hold), strict=True
            ):
                results[i] = {"index": i, **outcome.as_json()}
        for result in results:
            assert result is not None
            events_total.labels(str(result["status"])).inc()
        accepted = any(r is not None and r["status"] != "rejected" for r in results)
        code = status.HTTP_202_ACCEPTED if accepted or not results else 422
        return JSONResponse({"results": results}, code)

    @app.get("/patients/{patient_id}/timeline", dependencies=protected)
    def timeline(patient_id: str) -> dict[str, Any]:
        if unsafe_text(patient_id) is not None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no journey for this patient")
        patient_id = bound_id(patient_id)  # a long id, as the store names it
        episodes = service.store.episodes(patient_id)
        if not episodes:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no journey for this patient")
        return {
            "patient_id": patient_id,
            "episodes": _jsonable(episodes),
            "messages": _jsonable(service.store.messages(patient_id=patient_id)),
            "audit": [a.as_json() for a in service.store.audit(patient_id=patient_id)],
        }

    @app.get("/audit", dependencies=protected)
    def audit(
        flow: Annotated[StorableText | None, Query(max_length=100)] = None,
        since: Instant | None = None,
        message_status: Annotated[StorableText | None, Query(alias="status", max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        rows = service.store.audit(flow=flow, since=since, status=message_status, limit=limit)
        return [a.as_json() for a in rows]

    app.include_router(dashboard_router(service, protected))

    @app.get("/outbox", dependencies=protected)
    def outbox(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
        return [
            {
                "key": o.key,
                "channel": o.channel,
                "to": o.to,
                "subject": o.subject,
                "body": o.body,
                "sent_at": o.sent_at.isoformat(),
            }
            for o in service.store.outbox(limit)
        ]

    app.include_router(webhook_router(service))
    app.include_router(fhir_router(service), dependencies=protected)
    return app


def _guarded_docs(app: FastAPI, dependencies: list[Any]) -> None:
    """`/openapi.json`, `/docs` and `/redoc` behind the token, as FastAPI would serve them."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)


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


def _id_of(data: Any) -> str | None:
    """The id a rejected event was sent with, as the store would keep it; None if unusable."""
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or unsafe_text(value) is not None:
        return None  # a lone surrogate cannot even be written in the answer
    return bound_id(value)


def _jsonable(rows: list[EpisodeView] | list[MessageView]) -> list[dict[str, Any]]:
    convert: Callable[[Any], Any] = lambda v: v.isoformat() if isinstance(v, datetime) else v  # noqa: E731
    return [{k: convert(v) for k, v in asdict(row).items()} for row in rows]
