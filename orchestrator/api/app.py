"""The HTTP service (FastAPI): `create_app` composes the routers over a built `Runtime`.

The routes live in modules of their own, each a module-level router whose
endpoints receive only the parts of the runtime they use (`deps.py`):
`events.py` (event ingest and imports), `fhir.py`, `webhooks.py`,
`records.py` (timelines, audit, outbox), `health.py` (health, readiness,
metrics), `dashboard.py` and the console's pages (`orchestrator.console`).
`create_app` reads no settings of its own beyond the tokens. Every route but
the health checks, the signature-checked webhooks, the console's sign-in and
its static files needs a token of a role it allows whenever a token is set
(`roles.py`), the OpenAPI pages included; those are served offline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .. import console
from ..errors import UnstorableError
from ..service.runtime import Runtime
from . import dashboard, events, fhir, health, records, webhooks
from .metrics import Metrics
from .roles import ANY_ROLE, Tokens, require_role

__all__ = ["create_app"]


def create_app(runtime: Runtime, *, run_dispatcher: bool = True) -> FastAPI:
    """The FastAPI application over a built runtime.

    With `run_dispatcher`, the runtime's dispatch loop starts and stops with
    the app (SIGTERM: uvicorn ends the lifespan, the loop finishes its message).
    """
    tokens = Tokens(runtime.settings.role_tokens())

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
        # Served below: behind the tokens when set, and offline.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    app.state.tokens = tokens
    app.state.metrics = Metrics.over(runtime.store)
    app.add_exception_handler(UnstorableError, _unstorable)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _sign_in_first)  # type: ignore[arg-type]
    _docs(app)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(records.router)
    app.include_router(dashboard.router)
    app.include_router(webhooks.router)
    app.include_router(fhir.router)
    for router in console.ROUTERS:
        app.include_router(router)
    app.mount(console.STATIC_URL, StaticFiles(directory=console.STATIC_DIR), name="static")
    return app


async def _unstorable(_: Request, exc: UnstorableError) -> JSONResponse:
    # The safety net behind every route's own checks: a value the store
    # refused is the client's, a 400, never a 500.
    return JSONResponse({"error": f"a value the store cannot hold ({exc.reason})"}, 400)


async def _sign_in_first(request: Request, exc: HTTPException) -> Response:
    # A browser sent to a console page without a session goes to the sign-in form;
    # an API client (no text/html in Accept) gets the 401 as it is.
    wants_page = "text/html" in request.headers.get("accept", "")
    if exc.status_code == 401 and wants_page and request.url.path.startswith("/console"):
        return RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    return await http_exception_handler(request, exc)


def _docs(app: FastAPI) -> None:
    """`/openapi.json`, `/docs` and `/redoc` for every role, the pages' scripts served locally."""
    dependencies: list[Any] = [Depends(require_role(*ANY_ROLE))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return console.swagger_page("/openapi.json", app.title)

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    def redoc() -> HTMLResponse:
        return console.redoc_page("/openapi.json", app.title)
