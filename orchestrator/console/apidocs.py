"""`/docs` and `/redoc` served offline: Swagger UI and ReDoc from the vendored bundles.

FastAPI's pages load both from a CDN, which leaves them blank on a machine
without internet; these load them from `/console/static/vendor` instead, and
ask for no web fonts and no online validator.
"""

from __future__ import annotations

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from .pages import STATIC_URL

__all__ = ["redoc_page", "swagger_page"]

_VENDOR = f"{STATIC_URL}/vendor"


def swagger_page(openapi_url: str, title: str) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{_VENDOR}/swagger-ui/favicon-32x32.png",
        # Swagger UI would otherwise send the description to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )


def redoc_page(openapi_url: str, title: str) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=openapi_url,
        title=title,
        redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{_VENDOR}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
