"""The routes an app serves, flattened: (path, methods) of every route and mount.

FastAPI from 0.16x keeps an included router as one lazy entry of
`app.routes`; `iter_route_contexts` walks into it. Older releases list every
route flat, which this reads as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

__all__ = ["ServedRoute", "served_routes"]


@dataclass(frozen=True, slots=True)
class ServedRoute:
    path: str
    # Empty for a mount (static files), which answers every method it knows.
    methods: frozenset[str]


def _flat(app: FastAPI) -> Iterable[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before lazy included routers
        return app.routes
    return iter_route_contexts(app.routes)


def served_routes(app: FastAPI) -> list[ServedRoute]:
    """Every route of `app` in the order it matches, with its path and methods."""
    found = []
    for route in _flat(app):
        path = getattr(route, "path", None)
        if path is not None:
            found.append(ServedRoute(path, frozenset(getattr(route, "methods", None) or ())))
    return found
