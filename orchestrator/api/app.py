"""The HTTP service (FastAPI): `create_app` composes the routers over a built `Runtime`.

The routes live in modules of their own, each a module-level router whose
endpoints receive only the parts of the runtime they use (`deps.py`):
`events.py` (event ingest and imports), `fhir.py`, `webhooks.py`,
`records.py` (timelines, audit, outbox), `health.py` (health, readiness,
metrics) and `dashboard.py`. `create_app` reads no settings of its own
beyond the token. Every route but the health checks and the
signature-checked webhooks needs the bearer token whenever one is set, the
OpenAPI pages included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import UnstorableError
from ..service.runtime import Runtime
from . import dashboard, events, fhir, health, records, webhooks
from .deps import require_token
from .metrics import Metrics

__all__ = ["create_app"]


def create_app(runtime: Runtime, *, run_dispatcher: bool = True) -> FastAPI:
    """The FastAPI application over a built runtime.

    With `run_dispatcher`, the runtime's dispatch loop starts and stops with
    the app (SIGTERM: uvicorn ends the lifespan, the loop finishes its message).
    """
    settings = runtime.settings
    # `is not None`: an empty SecretStr is falsy (the settings refuse one; this stays exact).
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_dispatcher:
            runtime.start()
        try:
            yield
        finally:
            if run_dispatcher:
                runtime.stop()

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
    app.state.runtime = runtime
    app.state.token = token
    app.state.metrics = Metrics.over(runtime.store)
    app.add_exception_handler(UnstorableError, _unstorable)  # type: ignore[arg-type]
    if token is not None:
        _guarded_docs(app)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(records.router)
    app.include_router(dashboard.router)
    app.include_router(webhooks.router)
    app.include_router(fhir.router)
    return app


async def _unstorable(_: Request, exc: UnstorableError) -> JSONResponse:
    # The safety net behind every route's own checks: a value the store
    # refused is the client's, a 400, never a 500.
    return JSONResponse({"error": f"a value the store cannot hold ({exc.reason})"}, 400)


def _guarded_docs(app: FastAPI) -> None:
    """`/openapi.json`, `/docs` and `/redoc` behind the token, as FastAPI would serve them."""
    dependencies: list[Any] = [Depends(require_token)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)
