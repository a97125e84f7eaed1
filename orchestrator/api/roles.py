"""Which role a request speaks for, and the route guard that checks it (`require_role`).

A request carries its token as `Authorization: Bearer <token>` or, from the
console in a browser, in the HttpOnly session cookie `/console/login` sets.
The header wins when both are sent. With no token configured at all, every
request is an admin's: that is loopback development, and `orchestrator run`
refuses to bind beyond loopback without a token.

A browser sends the cookie (or, with no token set, nothing at all) with any
request a page makes, another site's included: a request that changes
something and carries no bearer header is refused (403) when its `Origin`
(else `Referer`) names another host than the one it was sent to. SameSite=Strict
already keeps the cookie off cross-site requests; this also covers an open
loopback API and a same-site sibling host.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from ..roles import Role

__all__ = [
    "ANY_ROLE",
    "PATIENT_ROLES",
    "SESSION_COOKIE",
    "Role",
    "Tokens",
    "require_role",
    "role_of",
]

SESSION_COOKIE = "orchestrator_session"
# Methods that only read: a page may send them anywhere.
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_ROLE = (Role.ADMIN, Role.OPERATIONS, Role.MARKETING)
# Who may see a patient's id, contact points or rendered messages.
PATIENT_ROLES = (Role.ADMIN, Role.OPERATIONS)


@dataclass(frozen=True)
class Tokens:
    """The accepted tokens with their roles; empty means the API is open."""

    roles: Mapping[str, Role]

    @property
    def open(self) -> bool:
        return not self.roles

    def role(self, given: str) -> Role | None:
        """The role of `given`, compared in constant time against every token."""
        found = None
        for token, role in self.roles.items():
            if hmac.compare_digest(given.encode(), token.encode()):
                found = role
        return found


def _given_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value if scheme.lower() == "bearer" else ""
    return request.cookies.get(SESSION_COOKIE)


def role_of(request: Request) -> Role | None:
    """The role the request's token has (admin when the API is open); None without one."""
    tokens: Tokens = request.app.state.tokens
    if tokens.open:
        return Role.ADMIN
    given = _given_token(request)
    return tokens.role(given) if given else None


def require_role(*roles: Role) -> Callable[[Request], Role]:
    """A dependency that lets only `roles` through: 401 without a valid token, 403 for another role."""
    allowed = frozenset(roles)

    def guard(request: Request) -> Role:
        if request.method not in _SAFE and "authorization" not in request.headers:
            _refuse_cross_site(request)
        role = role_of(request)
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {role} role may not use this")
        return role

    return guard


def _refuse_cross_site(request: Request) -> None:
    """403 when a browser sent this request from a page of another host."""
    sent_from = request.headers.get("origin") or request.headers.get("referer")
    if sent_from is None:
        return  # not a browser's page (a script, a test client): no ambient credential at stake
    if sent_from == "null" or urlsplit(sent_from).netloc != request.url.netloc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a request from another site is refused")
