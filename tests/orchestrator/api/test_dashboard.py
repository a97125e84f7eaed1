"""The dashboard: funnel and message figures as the store measures them, the small-count
rule, no patient on the pages, the token; and the pages in a real headless browser."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.event_schema import dump_event
from orchestrator.insight import FlowFigures, shown
from orchestrator.insight.reading import measured
from orchestrator.insight.worksheet import FUNNEL, funnel_texts
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests.live import TestClient, serve
from tests.orchestrator.console.conftest import Console, copies
from tests.orchestrator.insight.stream import insight_flow_data, insight_stream
from tests.orchestrator.runtime.conftest import write_templates
from tests.samples import ROOT, contact_details, patient_ids

START = datetime(2026, 3, 1, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Dashboard(Console):
    """The console's test harness, with the figures the dashboard should show."""

    def figures(self, flow_id: str) -> FlowFigures:
        return measured(self.service.store, self.service.flows.current[flow_id])


def _open(tmp_path: Path, token: str | None = None) -> Iterator[Dashboard]:
    clock = VirtualClock(START)
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'store.db'}",
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        api_token=token,
    )
    service = EmbeddedService.build(settings, clock=clock)
    try:
        with TestClient(create_app(service, run_dispatcher=False)) as client:
            yield Dashboard(service, clock, client)
    finally:
        service.store.engine.dispose()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Three copies of the knee-replacement stream and one of cardiology, dispatched to May."""
    opened = _open(tmp_path_factory.mktemp("dashboard"))
    dashboard = next(opened)
    events = copies("knee-replacement", 3) + copies("cardiology-consult", 1)
    # Each event arrives when it happens, with the clock dispatching what fell due before it.
    for data in sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"])):
        dashboard.run_until(datetime.fromisoformat(data["occurred_at"]))
        response = dashboard.client.post("/events", json=data)
        assert response.json()["results"][0]["status"] != "rejected"
    dashboard.run_until(datetime(2026, 5, 1, tzinfo=UTC))
    yield dashboard
    opened.close()


def cells(page: str, row_attr: str, row_id: str) -> dict[str, str]:
    """The classed cells of the table row `data-<row_attr>="<row_id>"`."""
    row = re.search(rf'<tr data-{row_attr}="{re.escape(row_id)}">(.*?)</tr>', page, re.S)
    assert row is not None, f"no row {row_attr}={row_id}"
    found = re.findall(r'<td class="n (\w+)">([^<]*)</td>', row.group(1))
    return {name: html.unescape(value) for name, value in found}


def test_the_funnel_shows_the_measured_entries_with_small_counts_hidden(fed: Dashboard) -> None:
    figures = fed.figures("knee-replacement")
    page = fed.client.get("/dashboard/flows/knee-replacement").text

    for stage in figures.stages:
        row = cells(page, "stage", stage.stage_id)
        funnel = {name: row[name] for name in FUNNEL}
        assert funnel == funnel_texts(stage, shown)
        # Never one hidden cell alone in a row: entered minus the others would give it back.
        assert list(funnel.values()).count("<11") != 1, funnel
    # Three copies of the five sample patients: 15 entries are shown, 6 are not.
    assert cells(page, "stage", "consult_booked")["entered"] == "15"
    assert cells(page, "stage", "admitted")["entered"] == "<11"
    assert figures.stage("admitted").entered == 6


def test_every_message_count_on_the_page_follows_the_small_count_rule(fed: Dashboard) -> None:
    figures = fed.figures("knee-replacement")
    page = fed.client.get("/dashboard/flows/knee-replacement").text

    for m in figures.messages:
        row = cells(page, "message", m.message_id)
        assert row["sent"] == shown(m.sent)
        assert row["scheduled"] == shown(m.scheduled)
        assert row["suppressed"] == shown(m.suppressed_total)
    shown_numbers = [int(n) for n in re.findall(r'<td class="n \w+">(\d+)</td>', page)]
    assert shown_numbers, "no number shown at all"
    assert all(n == 0 or n >= 11 for n in shown_numbers), shown_numbers
    # The bar labels of the funnel follow the rule too.
    funnel = re.search(r'<svg id="funnel".*?</svg>', page, re.S)
    assert funnel is not None
    labels = re.findall(r'<text x="\d+" y="\d+">([^<]*)</text>', funnel.group(0))
    numbers = [html.unescape(label) for label in labels if label.lstrip("&lt;").isdigit()]
    assert numbers
    assert all(n == "<11" or int(n) == 0 or int(n) >= 11 for n in numbers), numbers


def test_no_patient_appears_on_the_marketing_pages(fed: Dashboard) -> None:
    pages = [fed.client.get("/dashboard").text]
    pages += [fed.client.get(f"/dashboard/flows/{f}").text for f in fed.service.flows.current]
    text = "\n".join(pages)

    assert not [value for value in contact_details() if value in text]
    assert not [p for p in patient_ids() if re.search(rf"\b{re.escape(p)}\b", text)]
    assert "ep-" not in text


def test_the_flow_list_links_every_flow(fed: Dashboard) -> None:
    response = fed.client.get("/dashboard")

    assert response.status_code == 200
    for flow_id in fed.service.flows.current:
        assert f'href="/dashboard/flows/{flow_id}"' in response.text
    for flow_id in fed.service.flows.current:
        figures = fed.figures(flow_id)
        row = cells(response.text, "flow", flow_id)
        assert row["episodes"] == shown(figures.episodes)
        assert row["sent"] == shown(sum(m.sent for m in figures.messages))
        assert row["suppressed"] == shown(sum(m.suppressed_total for m in figures.messages))
    assert cells(response.text, "flow", "knee-replacement")["episodes"] == "15"


def test_an_unknown_flow_or_persona_is_a_404(fed: Dashboard) -> None:
    assert fed.client.get("/dashboard/flows/no-such-flow").status_code == 404
    assert fed.client.get("/dashboard/flows/knee-replacement?persona=nobody").status_code == 404


def test_the_dashboard_needs_the_token_when_one_is_set(tmp_path: Path) -> None:
    opened = _open(tmp_path, token="t0ken-for-the-tests")
    dashboard = next(opened)
    try:
        assert dashboard.client.get("/dashboard").status_code == 401
        ok = dashboard.client.get(
            "/dashboard", headers={"authorization": "Bearer t0ken-for-the-tests"}
        )
        assert ok.status_code == 200
    finally:
        opened.close()


# -- in a real browser ---------------------------------------------------------------


def chromium() -> Path:
    """Debian's chromium, installed when missing (the test set-up needs root and apt)."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.fail("/usr/bin/chromium is missing and there is no apt-get to install it")
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, timeout=600).returncode != 0:
            # Stale package lists: refresh them once and try again.
            subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
            subprocess.run(install, check=True, capture_output=True, timeout=600)
    return CHROMIUM


def headless(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(chromium()), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def test_the_browser_renders_the_funnel_numbers(fed: Dashboard, tmp_path: Path) -> None:
    figures = fed.figures("knee-replacement")
    app = create_app(fed.service, run_dispatcher=False)
    screenshot = ROOT / "tests" / "artifacts" / "dashboard-knee-replacement.png"
    screenshot.parent.mkdir(exist_ok=True)
    screenshot.unlink(missing_ok=True)
    with serve(app, access_log=False) as base:
        url = f"{base}/dashboard/flows/knee-replacement"
        dom = headless(url, tmp_path / "profile-dom", "--dump-dom").stdout
        headless(
            url,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1400,2400",
            "--hide-scrollbars",
        )

    assert "<svg" in dom and 'id="funnel"' in dom
    for stage in figures.stages:
        assert cells(dom, "stage", stage.stage_id)["entered"] == shown(stage.entered)
    assert cells(dom, "stage", "consult_booked")["entered"] == "15"
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_persona_page_and_the_holdout_comparison(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    data = insight_flow_data()
    booked = next(s for s in data["stages"] if s["id"] == "booked")
    next(m for m in booked["messages"] if m["id"] == "confirmation")["holdout"] = 30
    (flows / "insight-flow.yaml").write_text(yaml.safe_dump(data))
    templates = write_templates(
        tmp_path / "templates", ("confirmation", "intake_nudge", "reminder", "survey", "rebooking")
    )
    events = []
    for copy in range(3):
        for event in insight_stream():
            raw = dump_event(event)
            raw["id"] += f"-{copy}"
            raw["patient"]["id"] += f"-{copy}"
            if raw.get("appointment"):
                raw["appointment"]["id"] += f"-{copy}"
            events.append(raw)
    clock = VirtualClock(min(datetime.fromisoformat(e["occurred_at"]) for e in events))
    settings = Settings(db=f"sqlite:///{tmp_path / 'store.db'}", flows=flows, templates=templates)
    service = EmbeddedService.build(settings, clock=clock)
    try:
        with TestClient(create_app(service, run_dispatcher=False)) as client:
            dashboard = Dashboard(service, clock, client)
            for raw in sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"])):
                dashboard.run_until(datetime.fromisoformat(raw["occurred_at"]))
                assert client.post("/events", json=raw).status_code == 202
            dashboard.run_until(clock.now() + timedelta(days=10))
            everyone = client.get("/dashboard/flows/insight-flow").text
            alone = client.get("/dashboard/flows/insight-flow?persona=self_managing").text
            flow = service.flows.current["insight-flow"]
            figures = measured(service.store, flow, "self_managing")
    finally:
        service.store.engine.dispose()

    assert 'href="/dashboard/flows/insight-flow?persona=caregiver_coordinator"' in everyone
    assert 'id="holdouts"' in everyone
    assert re.search(r'<span id="episodes">15</span>', everyone)
    # Four of each copy's five patients manage alone: 12 episodes, 15 entries of `booked`.
    assert figures.episodes == 12
    assert re.search(r'<span id="episodes">12</span>', alone)
    assert cells(alone, "stage", "booked")["entered"] == shown(figures.stage("booked").entered)
    assert cells(alone, "stage", "booked")["entered"] == "15"
