"""How a console page is rendered: the Jinja2 environment, the nav and the shared context.

Every page extends `base.html` (nav, banner slot, `{% block content %}`) and
loads scripts and styles only from `/console/static`, never from another host.
A nav entry shows when its page is served and the viewer's role may open it,
so a module that adds a page adds its entry by registering its route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..api.roles import ANY_ROLE, PATIENT_ROLES, Role, role_of
from ..api.routes import served_routes
from ..insight import shown

__all__ = ["NAV", "STATIC_DIR", "STATIC_URL", "NavEntry", "render"]

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


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` with the nav, the viewer's role and the banner (None: no banner)."""
    role = role_of(request)
    served = _served(request)
    nav = [e for e in NAV if e.path in served and role is not None and role in e.roles]
    context.setdefault("banner", None)
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
