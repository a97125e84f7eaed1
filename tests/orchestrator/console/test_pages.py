"""The console's pages: they render for each role, load nothing from another host,
draw every stage, show versions and their diff, and sign a browser in and out."""

from __future__ import annotations

import html
import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest

from orchestrator.api.roles import SESSION_COOKIE
from orchestrator.console.figures import flow_figures_for
from orchestrator.insight import shown
from orchestrator.insight.worksheet import funnel_texts
from orchestrator.roles import Role
from tests.orchestrator.console.conftest import TOKENS, Console, bearer
from tests.samples import contact_details, patient_ids

PAGES = [
    "/console/login",
    "/console/flows",
    "/console/flows/knee-replacement",
    "/console/flows/cardiology-consult",
    "/console/flows/knee-replacement/diff?from=1&to=2",
    "/console/audit",
    "/console/audit/knee-replacement",
    "/console/flows/knee-replacement/versions",
    "/console/flows/knee-replacement/draft",
    "/docs",
    "/redoc",
]


class _Links(HTMLParser):
    """Every URL a page makes the browser fetch or follow (src, href, action, url(...))."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v is not None]


def links(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("path", PAGES)
def test_a_page_names_no_other_host(console: Console, path: str) -> None:
    # The draft editor is the admin's alone; every other page is marketing's too.
    role = Role.ADMIN if path.endswith("/draft") else Role.MARKETING
    page = console.client.get(path, headers=bearer(role))

    assert page.status_code == 200, page.text
    assert re.findall(r"(?:https?:)?//[\w.-]+", page.text) == []
    for url in links(page.text):
        assert url.startswith("/") and not url.startswith("//"), url


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/console/flows"])
def test_every_script_and_style_a_page_loads_is_served_here(console: Console, path: str) -> None:
    page = console.client.get(path, headers=bearer(Role.MARKETING)).text
    loaded = [u for u in links(page) if u.startswith("/console/static/")]

    assert loaded, "the page loads no local script or style"
    for url in loaded:
        assert console.client.get(url).status_code == 200, url


def test_the_docs_load_the_vendored_swagger_ui_and_the_redoc_bundle(console: Console) -> None:
    docs = console.client.get("/docs", headers=bearer(Role.ADMIN)).text
    redoc = console.client.get("/redoc", headers=bearer(Role.ADMIN)).text

    assert "/console/static/vendor/swagger-ui/swagger-ui-bundle.js" in links(docs)
    assert "/console/static/vendor/swagger-ui/swagger-ui.css" in links(docs)
    assert "/console/static/vendor/redoc/redoc.standalone.js" in links(redoc)
    bundle = console.client.get("/console/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text


def test_the_vendored_scripts_keep_their_licences(console: Console) -> None:
    for path in (
        "/console/static/vendor/htmx/LICENSE",
        "/console/static/vendor/swagger-ui/LICENSE",
        "/console/static/vendor/swagger-ui/NOTICE",
        "/console/static/vendor/redoc/LICENSE",
    ):
        assert console.client.get(path).status_code == 200, path
    htmx = console.client.get("/console/static/vendor/htmx/htmx.min.js").text
    assert htmx.startswith("/*! htmx 2.") and "Zero-Clause BSD" in htmx.splitlines()[0]


def test_the_flow_diagram_draws_every_stage_with_its_funnel(console: Console) -> None:
    flow = console.service.flows.current["knee-replacement"]
    page = console.client.get("/console/flows/knee-replacement", headers=bearer(Role.MARKETING))

    svg = re.search(r"<svg class=\"diagram\".*?</svg>", page.text, re.S)
    assert svg is not None
    drawn = re.findall(r'<g class="stage[^"]*" data-stage="([^"]+)">', svg.group(0))
    assert drawn == [s.id for s in flow.stages]
    assert svg.group(0).count("entered ") == len(flow.stages)
    figures = flow_figures_for(console.service.store, flow)
    for stage in flow.stages:
        box = re.search(rf'data-stage="{stage.id}">.*?</g>', svg.group(0), re.S)
        funnel = funnel_texts(figures.stage(stage.id), shown)
        assert box is not None
        assert html.escape(f"entered {funnel['entered']} ·") in box.group(0)
        assert html.escape(f"dropped off {funnel['dropped_off']}") in box.group(0)
    assert figures.stage(flow.stages[0].id).entered >= 11, "too few entries to test a count"
    assert 'marker-end="url(#arrow)"' in svg.group(0)


def test_the_flow_page_lists_each_stages_facts_and_each_messages_rules(
    console: Console,
) -> None:
    flow = console.service.flows.current["knee-replacement"]
    page = console.client.get("/console/flows/knee-replacement", headers=bearer(Role.ADMIN)).text

    for stage in flow.stages:
        assert f'id="stage-{stage.id}"' in page
        if stage.success_metric is not None:
            assert stage.success_metric.name in page
    for _, spec in flow.specs.values():
        assert f'<tr data-message="{spec.id}">' in page
    assert "quiet hours: deferred from" in page
    assert "caps: " in page


def test_the_flow_list_shows_each_version_and_whether_episodes_still_run_on_it(
    console: Console,
) -> None:
    page = console.client.get("/console/flows", headers=bearer(Role.MARKETING)).text
    row = re.search(r'<tr data-flow="knee-replacement">.*?</tr>', page, re.S)

    assert row is not None
    text = " ".join(row.group(0).split())
    assert 'data-version="2">version 2: current,' in text
    assert 'data-version="1">version 1: older, &lt;11 episodes still running on it' in text


def test_the_diff_of_two_versions_shows_what_changed(console: Console) -> None:
    page = console.client.get(
        "/console/flows/knee-replacement/diff?from=1&to=2", headers=bearer(Role.MARKETING)
    ).text

    assert '<span class="removed">-version: 1</span>' in page
    assert '<span class="added">+version: 2</span>' in page
    assert '<span class="added">+title: Knee replacement (v2)</span>' in page


@pytest.mark.parametrize(
    "query", ["from=1&to=7", "from=0&to=2", "from=x&to=2", "to=2", "from=1&to=99999999999"]
)
def test_a_diff_of_a_version_that_is_not_there_is_a_clear_4xx(console: Console, query: str) -> None:
    response = console.client.get(
        f"/console/flows/knee-replacement/diff?{query}", headers=bearer(Role.ADMIN)
    )

    assert response.status_code in (404, 422), response.text


def test_the_aggregate_pages_show_no_patient_id_and_no_contact(console: Console) -> None:
    pages = "".join(
        console.client.get(path, headers=bearer(Role.MARKETING)).text
        for path in (
            "/console/flows",
            *(f"/console/flows/{f}" for f in console.service.flows.current),
            *(f"/console/flows/{f}/versions" for f in console.service.flows.current),
        )
    )

    assert [p for p in patient_ids() if p in pages] == []
    assert [c for c in contact_details() if c in pages] == []


def test_signing_in_sets_a_strict_httponly_cookie_that_opens_the_pages(console: Console) -> None:
    client = console.client
    assert client.get("/console/flows").status_code == 401

    response = client.post(
        "/console/login", data={"token": TOKENS[Role.OPERATIONS]}, follow_redirects=False
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/console/flows"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    try:
        page = client.get("/console/flows")
        assert page.status_code == 200
        assert "signed in: operations" in page.text
        assert client.get("/patients/p-kr-001-000/timeline").status_code == 200

        out = client.post("/console/logout", follow_redirects=False)

        assert out.status_code == 303
        assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    finally:
        client.cookies.clear()
    assert client.get("/console/flows").status_code == 401


def test_a_page_of_another_site_cannot_use_the_session_to_change_anything(
    console: Console,
) -> None:
    client = console.client
    client.post("/console/login", data={"token": TOKENS[Role.ADMIN]}, follow_redirects=False)
    draft = "/console/flows/knee-replacement/draft"
    try:
        for origin in ("https://evil.example.org", "null"):
            forged = client.post(draft, data={"source": "x"}, headers={"origin": origin})
            assert forged.status_code == 403, origin
        referred = client.post(
            draft, data={"source": "x"}, headers={"referer": "https://evil.example.org/page"}
        )
        assert referred.status_code == 403
        # The console's own pages post with their own origin.
        own = client.post(draft, data={"source": "x"}, headers={"origin": "http://testserver"})
        assert own.status_code == 200
        # A bearer token is never sent by a browser on its own: no origin check.
        scripted = console.client.post(
            draft,
            data={"source": "x"},
            headers={"origin": "https://evil.example.org", **bearer(Role.ADMIN)},
        )
        assert scripted.status_code == 200
    finally:
        client.cookies.clear()


def test_a_marketing_session_is_refused_a_timeline(console: Console) -> None:
    client = console.client
    client.post("/console/login", data={"token": TOKENS[Role.MARKETING]}, follow_redirects=False)
    try:
        assert client.get("/console/flows").status_code == 200
        assert client.get("/patients/p-kr-001-000/timeline").status_code == 403
    finally:
        client.cookies.clear()


def test_a_wrong_token_gets_the_form_again_without_the_token(console: Console) -> None:
    wrong = "not-a-token-anyone-has-0000"

    response = console.client.post("/console/login", data={"token": wrong}, follow_redirects=False)

    assert response.status_code == 401
    assert "That token is not known." in response.text
    assert wrong not in response.text
    assert "set-cookie" not in response.headers


def test_a_browser_without_a_session_is_sent_to_sign_in(console: Console) -> None:
    response = console.client.get(
        "/console/flows", headers={"accept": "text/html"}, follow_redirects=False
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"


def test_the_nav_shows_only_pages_that_are_served_and_the_role_may_open(console: Console) -> None:
    page = console.client.get("/console/flows", headers=bearer(Role.MARKETING)).text
    nav = re.search(r"<nav>.*?</nav>", page, re.S)

    assert nav is not None
    assert '<a href="/console/flows">Flows</a>' in nav.group(0)
    # Patients and Audit arrive with their own pages; until then, no dead link.
    assert "/console/patients" not in nav.group(0)


def test_the_wheel_ships_every_template_and_static_file() -> None:
    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["orchestrator"]
    package = root / "orchestrator"
    shipped = [
        p.relative_to(package).as_posix()
        for p in (package / "console").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".md") and "__pycache__" not in p.parts
    ]

    assert shipped
    assert [f for f in shipped if not any(_globbed(f, pattern) for pattern in patterns)] == []


def _globbed(path: str, pattern: str) -> bool:
    """Whether setuptools' glob `pattern` takes `path` (a `*` stays within one directory)."""
    parts, wanted = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and all(
        fnmatch(p, w) for p, w in zip(parts, wanted, strict=True)
    )
