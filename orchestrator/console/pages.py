"""How a console page is rendered: the Jinja2 environment, the nav and the shared context.

Every page extends `base.html` (nav, banner slot, `{% block content %}`) and
loads scripts and styles only from `/console/static`, never from another host.
A nav entry shows when its page is served and the viewer's role may open it,
so a module that adds a page adds its entry by registering its route.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..api.deps import runtime_of
from ..api.roles import ANY_ROLE, PATIENT_ROLES, Role, role_of
from ..api.routes import served_routes
from ..insight import SMALL, shown, shown_below

__all__ = ["NAV", "STATIC_DIR", "STATIC_URL", "NavEntry", "pilot_banner", "render", "small_counts"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/console/static"


@dataclass(frozen=True, slots=True)
class NavEntry:
    label: str
    path: str
    roles: Sequence[Role]


NAV = (
    NavEntry("Flows", "/console/flows", ANY_ROLE),
    NavEntry("Patients", "/console/patients", PATIENT_ROLES),
    NavEntry("Audit", "/console/audit", ANY_ROLE),
)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.console", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = shown
    env.globals["static"] = STATIC_URL
    return env


def _served(request: Request) -> set[str]:
    return {route.path for route in served_routes(request.app)}


def small_counts(request: Request) -> Callable[[int], str]:
    """How the app's aggregate pages show a count: hidden below the configured threshold."""
    return shown_below(runtime_of(request).settings.small_count_threshold)


def pilot_banner(threshold: int) -> str | None:
    """What every page says while a pilot has lowered the small-count threshold."""
    if threshold >= SMALL:
        return None
    return (
        f"Pilot setting: counts below {threshold} are hidden, not below {SMALL} "
        f"(ORCHESTRATOR_SMALL_COUNT_THRESHOLD={threshold}). Small counts can point at a person: "
        "share these figures only within the pilot."
    )


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` with the nav, the viewer's role and the banner: the page's own,
    else the pilot's while the small-count threshold is lowered (None: no banner)."""
    role = role_of(request)
    served = _served(request)
    nav = [e for e in NAV if e.path in served and role is not None and role in e.roles]
    if context.get("banner") is None:
        context["banner"] = pilot_banner(runtime_of(request).settings.small_count_threshold)
    page = (
        _environment()
        .get_template(name)
        .render(
            nav=nav,
            role=role,
            signed_in=role is not None and not request.app.state.tokens.open,
            **context,
        )
    )
    return HTMLResponse(page, status_code=status_code)
