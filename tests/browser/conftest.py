"""The real app under uvicorn, seeded with the samples, and a headless Chromium to drive it.

`served` builds the runtime over a SQLite file (the shipped flows, version 1
of knee-replacement first, then version 2), runs every `samples/events/*.jsonl`
stream through the intake on a virtual clock, dispatching what falls due, and
serves the app on a free loopback port in a thread. `browser` is the Debian
`chromium` driven by Playwright through `executable_path` (Playwright's own
browser download is not used). `visit` opens a page as a role, signed in
through `/console/login`, and records what the page logs as errors and every
URL it requests; a request to another host is recorded and aborted, never sent.

Without Chromium or Playwright the tests skip, except in CI (`CI=true`), where
they fail and say what is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import parse_event
from orchestrator.roles import Role
from orchestrator.runtime.intake import events_of
from orchestrator.service import Runtime
from orchestrator.settings import Settings
from tests.live import serve
from tests.orchestrator.console.conftest import TOKENS, bump_knee_replacement
from tests.samples import ROOT, SAMPLE_FILES, sample_events

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "build" / "screenshots"
START = datetime(2026, 3, 1, tzinfo=UTC)
# Every sample has run its course by then (their last events are at the end of March).
UNTIL = datetime(2026, 5, 1, tzinfo=UTC)
# A knee-replacement patient of the samples, and one whose events all reach the store.
PATIENT = "p-kr-001"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Schemes that name no host: inline images, generated blobs, the empty page.
HOSTLESS = frozenset({"data", "blob", "about"})


def _missing(reason: str) -> NoReturn:
    """Fail in CI, where the browser suite must run; skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def is_local(url: str) -> bool:
    """Whether fetching `url` stays on this machine (loopback, or no host at all)."""
    parts = urlsplit(url)
    if parts.scheme in HOSTLESS:
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOOPBACK


@dataclass(frozen=True)
class Served:
    url: str
    app: FastAPI
    runtime: Runtime


def _feed(runtime: Runtime, clock: VirtualClock, events: list[dict[str, Any]]) -> None:
    """Each event at its own time, dispatching what falls due on the way, then on to `UNTIL`."""

    def run_until(until: datetime) -> None:
        while clock.now() < until:
            clock.advance(min(timedelta(hours=2), until - clock.now()))
            while runtime.tick():
                pass

    for data in sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"])):
        run_until(datetime.fromisoformat(data["occurred_at"]))
        [result] = runtime.intake.take("api", events_of([parse_event(data)]))
        # (The imaging sample repeats its first event on purpose: a duplicate.)
        assert result.status in ("accepted", "duplicate"), (data["id"], result)
    run_until(UNTIL)


def _settings(root: Path) -> Settings:
    return Settings(
        db=f"sqlite:///{root / 'store.db'}",
        flows=root / "flows",
        templates=ROOT / "templates",
        api_token=TOKENS[Role.ADMIN],
        api_tokens=json.dumps(
            {TOKENS[Role.OPERATIONS]: "operations", TOKENS[Role.MARKETING]: "marketing"}
        ),
    )


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(ROOT / "flows", root / "flows")
    clock = VirtualClock(START)
    events = [e for path in SAMPLE_FILES for e in sample_events(path.stem)]
    with pytest.MonkeyPatch.context() as env:
        # No developer's ORCHESTRATOR_* setting reaches the runtime these tests share.
        for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
            env.delenv(name)
        # The samples run on version 1; version 2 arrives after, so the flow has a history.
        first = Runtime.build(_settings(root), clock=clock)
        try:
            _feed(first, clock, events)
        finally:
            first.close()
        bump_knee_replacement(root / "flows")
        runtime = Runtime.build(_settings(root), clock=clock)
    app = create_app(runtime, run_dispatcher=False)
    try:
        with serve(app, access_log=False) as url:
            yield Served(url, app, runtime)
    finally:
        runtime.close()


@pytest.fixture(scope="package", autouse=True)
def _browser_available() -> None:
    """Before any fixture seeds a store: is there a browser to drive at all?"""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Error as exc:
            _missing(f"Chromium at {CHROMIUM} did not start: {exc.message.splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """A page that records its console errors, uncaught exceptions and requests."""

    page: Page
    who: str
    errors: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requested.append(r.url))

    @property
    def foreign(self) -> list[str]:
        return [url for url in self.requested if not is_local(url)]

    def open(self, path: str, *, settle: bool = False) -> Response:
        """Go to `path`; with `settle`, also wait until the page's scripts stop fetching."""
        response = self.page.goto(path, wait_until="load")
        assert response is not None, path
        if settle:
            self.page.wait_for_load_state("networkidle")
        return response

    def screenshot(self, name: str) -> Path:
        """Save what the page shows to `build/screenshots/` (not committed)."""
        slug = re.sub(r"[^\w.-]+", "-", f"{self.who}-{name}").strip("-")
        path = SCREENSHOTS / f"{slug}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


Visit = Callable[[Role | None], Tab]


@pytest.fixture(scope="package")
def contexts(browser: Browser, served: Served) -> Iterator[dict[Role | None, BrowserContext]]:
    """One browser context per role, each signed in through the form; None: signed out."""
    found: dict[Role | None, BrowserContext] = {}
    yield found
    for context in found.values():
        context.close()


def _context(
    browser: Browser, served: Served, contexts: dict[Role | None, BrowserContext], role: Role | None
) -> BrowserContext:
    if role in contexts:
        return contexts[role]
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
    # Recorded by each Tab, and never sent: the suite must not depend on the network.
    context.route(lambda url: not is_local(url), lambda route: route.abort())
    contexts[role] = context
    if role is not None:
        tab = Tab(context.new_page(), role.value)
        tab.open("/console/login")
        tab.page.fill("#token", TOKENS[role])
        with tab.page.expect_navigation(wait_until="networkidle"):
            tab.page.click("button[type=submit]")
        assert urlsplit(tab.page.url).path == "/console/flows", tab.page.url
        assert tab.errors == [] and tab.foreign == [], (tab.errors, tab.foreign)
        tab.page.close()
    return context


@pytest.fixture
def visit(
    browser: Browser, served: Served, contexts: dict[Role | None, BrowserContext]
) -> Iterator[Visit]:
    """A fresh page as `role` (None: signed out); closed after the test."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tabs: list[Tab] = []

    def open_tab(role: Role | None) -> Tab:
        context = _context(browser, served, contexts, role)
        tab = Tab(context.new_page(), role.value if role is not None else "signed-out")
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.page.close()
