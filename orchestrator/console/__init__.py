"""The console: server-rendered pages under `/console` for operations and marketing.

`create_app` includes every router in `ROUTERS` and serves `STATIC_DIR` at
`/console/static` (htmx and the API docs' bundles, vendored with their
licences: no page loads anything from another host). A console module adds
its pages by adding its router here.
"""

from fastapi import APIRouter

from . import audit, flows, patients, session
from .apidocs import redoc_page, swagger_page
from .pages import STATIC_DIR, STATIC_URL

__all__ = ["ROUTERS", "STATIC_DIR", "STATIC_URL", "redoc_page", "swagger_page"]

ROUTERS: list[APIRouter] = [session.router, flows.router, patients.router, audit.router]
