"""Every console page, and the API's docs and dashboard, in a real browser for each role.

The pages are the app's own routes (`served_routes`), so a page added later is
opened here without a new test; each is opened as every role `test_roles.ALLOWED`
admits. A page must answer 200, log no error, throw nothing and fetch nothing
from another host.
"""

from __future__ import annotations

import re

import pytest

from orchestrator.api.routes import served_routes
from orchestrator.roles import Role
from tests.browser.conftest import PATIENT, Served, Tab, Visit
from tests.orchestrator.console.test_roles import ALLOWED, PUBLIC

pytestmark = pytest.mark.browser

# What fills a page's path parameters, and the query a page needs.
PARAMETERS = {"flow_id": "knee-replacement", "patient_id": PATIENT}
QUERIES = {"/console/flows/{flow_id}/diff": "from=1&to=2"}
# The API's pages for people; its other GET routes answer JSON.
API_PAGES = ("/docs", "/redoc", "/dashboard")


# Downloads (CSV exports) are files, not pages: a browser saves them.
DOWNLOADS = (".csv",)


def _is_page(path: str) -> bool:
    if path.startswith("/console/static") or path.endswith(DOWNLOADS):
        return False
    return path.startswith(("/console", "/dashboard")) or path in API_PAGES


def _pages(served: Served) -> list[str]:
    return [r.path for r in served_routes(served.app) if "GET" in r.methods and _is_page(r.path)]


def _url(route: str) -> str:
    names = re.findall(r"{(\w+)}", route)
    unknown = [n for n in names if n not in PARAMETERS]
    assert not unknown, f"{route}: add a value for {unknown} to PARAMETERS"
    url = re.sub(r"{(\w+)}", lambda m: PARAMETERS[m.group(1)], route)
    query = QUERIES.get(route)
    return f"{url}?{query}" if query else url


def _roles(route: str) -> list[Role | None]:
    allowed = ALLOWED[("GET", route)]
    assert not isinstance(allowed, str), route
    return [None] if allowed is PUBLIC else [role for role in Role if role in allowed]


def _check(tab: Tab, path: str) -> None:
    # The docs' scripts fetch the API description, then draw it, after the page loaded.
    response = tab.open(path, settle=path in API_PAGES)
    tab.screenshot(path)

    assert response.status == 200, (tab.who, path, response.status)
    assert tab.errors == [], (tab.who, path, tab.errors)
    assert tab.foreign == [], (tab.who, path, tab.foreign)


def test_every_page_loads_for_each_role_with_no_error_and_nothing_from_another_host(
    served: Served, visit: Visit
) -> None:
    pages = _pages(served)
    assert "/console/flows/{flow_id}" in pages and "/docs" in pages, pages

    opened = 0
    for route in pages:
        for role in _roles(route):
            _check(visit(role), _url(route))
            opened += 1
    assert opened >= 2 * len(pages)


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        # Swagger UI and ReDoc draw the API's title from /openapi.json: the vendored
        # bundles ran, offline.
        ("/docs", ".swagger-ui .info .title"),
        ("/redoc", "h1"),
    ],
)
def test_the_api_docs_render_offline(visit: Visit, path: str, rendered: str) -> None:
    tab = visit(Role.MARKETING)
    tab.open(path)
    title = tab.page.locator(rendered).first
    title.wait_for(state="visible")
    tab.screenshot(f"{path}-rendered")

    assert "Patient communication orchestrator" in title.inner_text()
    assert tab.errors == [] and tab.foreign == [], (tab.errors, tab.foreign)


def test_the_flow_page_shows_its_svg_diagram_with_every_stage(served: Served, visit: Visit) -> None:
    flow = served.runtime.flows.current["knee-replacement"]
    tab = visit(Role.MARKETING)
    tab.open("/console/flows/knee-replacement")
    diagram = tab.page.locator("svg.diagram")
    tab.screenshot("flow-diagram")

    assert diagram.is_visible()
    box = diagram.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100 * len(flow.stages) / 2
    stages = diagram.locator("g.stage")
    assert [stages.nth(i).get_attribute("data-stage") for i in range(stages.count())] == [
        s.id for s in flow.stages
    ]
    for stage in flow.stages:
        drawn = diagram.locator(f'g.stage[data-stage="{stage.id}"]')
        assert drawn.is_visible(), stage.id
        # SVG text is no HTML element: its text content, not its rendered inner text.
        assert drawn.locator("text.name").text_content() == stage.name
        assert "entered " in (drawn.locator("text.funnel").text_content() or ""), stage.id


def test_a_signed_out_visitor_is_sent_to_the_sign_in_form(visit: Visit) -> None:
    tab = visit(None)
    tab.open("/console/flows")
    tab.screenshot("signed-out")

    assert tab.page.url.endswith("/console/login")
    assert tab.page.locator("input#token").is_visible()
    assert tab.errors == [] and tab.foreign == []
