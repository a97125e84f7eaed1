"""Signing in to the console: a form that takes a token and keeps it in a session cookie.

The cookie holds the token itself, HttpOnly (no script reads it) and
SameSite=Strict (no other site's page sends it), and Secure over HTTPS; it
ends with the browser session. The role check (`api/roles.py`) accepts it
wherever it accepts the bearer header. A wrong token is answered 401 with the
form again; the answer never repeats what was typed.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.bodies import read_limited
from ..api.roles import SESSION_COOKIE, Tokens
from .pages import render

__all__ = ["home", "login", "login_form", "logout", "router"]

# A form holding one token: far more than any token needs.
_FORM_LIMIT = 4096
_HOME = "/console/flows"

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse(_HOME, status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", problem=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    body = await read_limited(request, _FORM_LIMIT)
    if body is None:
        return render(request, "login.html", problem="That form is too large.", status_code=413)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=4, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return render(
            request, "login.html", problem="That form could not be read.", status_code=400
        )
    given = fields.get("token", [""])[0].strip()
    tokens: Tokens = request.app.state.tokens
    redirect = RedirectResponse(_HOME, status.HTTP_303_SEE_OTHER)
    if tokens.open:
        return redirect  # nothing to sign in to
    if not given or tokens.role(given) is None:
        return render(request, "login.html", problem="That token is not known.", status_code=401)
    redirect.set_cookie(
        SESSION_COOKIE,
        given,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return redirect


@router.post("/logout")
def logout() -> RedirectResponse:
    redirect = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    redirect.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return redirect
