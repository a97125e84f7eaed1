"""Health, readiness and metrics: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from ..errors import StoreError
from ..store import pending
from .deps import Metrics, Store
from .roles import PATIENT_ROLES, require_role

__all__ = ["healthz", "metrics", "readyz", "router"]

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: Store) -> JSONResponse:
    try:
        store.ping()
        behind = pending(store.engine)
    except StoreError as exc:
        return JSONResponse({"status": "unavailable", "store": exc.__class__.__name__}, 503)
    if behind:
        return JSONResponse({"status": "unavailable", "store": "migrations pending"}, 503)
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(require_role(*PATIENT_ROLES))],
)
def metrics(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")
