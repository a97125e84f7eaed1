"""What an HTTP route may ask for: each part of the runtime as a FastAPI dependency.

`create_app` keeps the built `Runtime`, the accepted tokens (`roles.Tokens`)
and the metrics on `app.state`; a route declares only the parts it uses (`Intake`, `Store`,
`Now`, ...), never the whole runtime, so that what it touches is in its
signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request

from ..clock import Clock as _Clock
from ..flows.model import Flow
from ..runtime.intake import Intake as _Intake
from ..runtime.registry import FlowRegistry
from ..service.runtime import Runtime
from ..settings import Settings as _Settings
from ..store import SqlStore
from .metrics import Metrics as _Metrics

__all__ = [
    "Clock",
    "CurrentFlows",
    "Intake",
    "Metrics",
    "Registry",
    "Settings",
    "Store",
    "runtime_of",
]


def runtime_of(request: Request) -> Runtime:
    """The runtime `create_app` was given (for the app's own wiring, not for routes)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def _settings(request: Request) -> _Settings:
    return runtime_of(request).settings


def _store(request: Request) -> SqlStore:
    return runtime_of(request).store


def _intake(request: Request) -> _Intake:
    return runtime_of(request).intake


def _clock(request: Request) -> _Clock:
    return runtime_of(request).clock


def _flows(request: Request) -> Mapping[str, Flow]:
    registry: FlowRegistry = runtime_of(request).flows
    return registry.current


def _registry(request: Request) -> FlowRegistry:
    return runtime_of(request).flows


def _metrics(request: Request) -> _Metrics:
    metrics: _Metrics = request.app.state.metrics
    return metrics


Settings = Annotated[_Settings, Depends(_settings)]
Store = Annotated[SqlStore, Depends(_store)]
Intake = Annotated[_Intake, Depends(_intake)]
# The runtime's clock: a route reads the time through it, never the wall clock.
Clock = Annotated[_Clock, Depends(_clock)]
CurrentFlows = Annotated[Mapping[str, Flow], Depends(_flows)]
# Every flow version the service runs: the current ones and those episodes finish on.
Registry = Annotated[FlowRegistry, Depends(_registry)]
Metrics = Annotated[_Metrics, Depends(_metrics)]
