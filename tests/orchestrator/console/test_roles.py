"""Route by route: which roles each route of the app lets through.

`ALLOWED` names every route the app serves with the roles it admits (PUBLIC:
no token needed). A route added without an entry here fails
`test_every_route_declares_its_roles`, so no route is served unguarded by
oversight.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.api.routes import served_routes
from orchestrator.roles import Role
from tests.orchestrator.console.conftest import TOKENS, Console, bearer, copies

PUBLIC: frozenset[Role] = frozenset()
EVERYONE = frozenset(Role)
PATIENTS = frozenset({Role.ADMIN, Role.OPERATIONS})
ADMIN = frozenset({Role.ADMIN})
# Checked by the provider's signature instead: a token neither opens nor closes them.
SIGNED = "signed"

# (method, path) -> roles allowed; PUBLIC routes need no token at all.
ALLOWED: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/openapi.json"): EVERYONE,
    ("GET", "/docs"): EVERYONE,
    ("GET", "/redoc"): EVERYONE,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PATIENTS,
    # Ingest keeps the rule it had before roles: the admin token (ORCHESTRATOR_API_TOKEN).
    ("POST", "/imports"): ADMIN,
    ("POST", "/imports/{import_id}/close"): ADMIN,
    ("POST", "/events"): ADMIN,
    ("POST", "/fhir/Appointment"): ADMIN,
    ("POST", "/fhir/Encounter"): ADMIN,
    ("POST", "/fhir"): ADMIN,
    # Patient ids, contact points and bodies: never marketing's.
    ("GET", "/patients/{patient_id}/timeline"): PATIENTS,
    ("GET", "/audit"): PATIENTS,
    ("GET", "/outbox"): PATIENTS,
    ("GET", "/dashboard"): EVERYONE,
    ("GET", "/dashboard/flows/{flow_id}"): EVERYONE,
    ("POST", "/webhooks/twilio/status"): SIGNED,
    ("POST", "/webhooks/twilio/inbound"): SIGNED,
    ("POST", "/webhooks/sendgrid/events"): SIGNED,
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("POST", "/console/logout"): PUBLIC,
    ("GET", "/console/static"): PUBLIC,
    ("GET", "/console/flows"): EVERYONE,
    ("GET", "/console/flows/{flow_id}"): EVERYONE,
    ("GET", "/console/flows/{flow_id}/diff"): EVERYONE,
    ("GET", "/console/patients"): PATIENTS,
    ("GET", "/console/patients/{patient_id}"): PATIENTS,
    ("GET", "/console/audit"): EVERYONE,
    ("GET", "/console/audit/{flow_id}"): EVERYONE,
    ("GET", "/console/audit/{flow_id}/worksheet.csv"): EVERYONE,
}

# What to fill a route's path parameters with, and any query it needs.
PATHS = {
    "/patients/{patient_id}/timeline": "/patients/p-kr-001-000/timeline",
    "/imports/{import_id}/close": "/imports/unknown-import/close",
    "/dashboard/flows/{flow_id}": "/dashboard/flows/knee-replacement",
    "/console/flows/{flow_id}": "/console/flows/knee-replacement",
    "/console/flows/{flow_id}/diff": "/console/flows/knee-replacement/diff?from=1&to=2",
    "/console/static": "/console/static/console.css",
    "/console/patients/{patient_id}": "/console/patients/p-kr-001-000",
    "/console/audit/{flow_id}": "/console/audit/knee-replacement",
    "/console/audit/{flow_id}/worksheet.csv": "/console/audit/knee-replacement/worksheet.csv",
}


def _served(console: Console) -> set[tuple[str, str]]:
    found = set()
    for route in served_routes(console.client.app):  # type: ignore[arg-type]
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_route_declares_its_roles(console: Console) -> None:
    served = _served(console)

    assert served - ALLOWED.keys() == set(), "routes with no roles declared in ALLOWED"
    assert ALLOWED.keys() - served == set(), "ALLOWED names routes the app no longer serves"


def _call(console: Console, method: str, path: str, headers: dict[str, str]) -> Any:
    url = PATHS.get(path, path)
    if (method, path) == ("POST", "/console/login"):
        # Signing in is how a visitor without a token gets one in: the form takes it.
        form = {"token": TOKENS[Role.MARKETING]}
        return console.client.post(url, data=form, headers=headers, follow_redirects=False)
    if method == "POST":
        body = copies("knee-replacement", 1, first=50)[0] if path == "/events" else {}
        return console.client.post(url, json=body, headers=headers, follow_redirects=False)
    return console.client.get(url, headers=headers, follow_redirects=False)


@pytest.mark.parametrize(("method", "path"), sorted(ALLOWED))
def test_each_route_admits_its_roles_and_refuses_the_others(
    console: Console, method: str, path: str
) -> None:
    allowed = ALLOWED[(method, path)]
    anonymous = _call(console, method, path, {})
    if allowed == SIGNED:
        for role in Role:
            response = _call(console, method, path, bearer(role))
            assert response.status_code == anonymous.status_code, role
        return
    assert not isinstance(allowed, str)
    if allowed is PUBLIC:
        assert anonymous.status_code not in (401, 403), anonymous.text
    else:
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"] == "Bearer"
    for role in Role:
        response = _call(console, method, path, bearer(role))
        if allowed is PUBLIC or role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert TOKENS[role] not in response.text


@pytest.mark.parametrize(
    "path", ["/console/flows", "/console/flows/knee-replacement", "/dashboard", "/docs"]
)
def test_a_page_every_role_may_open_answers_200_to_each(console: Console, path: str) -> None:
    for role in Role:
        assert console.client.get(path, headers=bearer(role)).status_code == 200, role


def test_the_marketing_role_is_refused_a_patients_timeline(console: Console) -> None:
    path = "/patients/p-kr-001-000/timeline"

    assert console.client.get(path, headers=bearer(Role.OPERATIONS)).status_code == 200
    refused = console.client.get(path, headers=bearer(Role.MARKETING))

    assert refused.status_code == 403
    assert "p-kr-001" not in refused.text


def test_ingest_takes_the_admin_token_only(console: Console) -> None:
    event = copies("knee-replacement", 1, first=60)[0]
    for role in (Role.OPERATIONS, Role.MARKETING):
        assert console.client.post("/events", json=event, headers=bearer(role)).status_code == 403
    assert console.client.post("/events", json=event, headers=bearer(Role.ADMIN)).status_code == 202
