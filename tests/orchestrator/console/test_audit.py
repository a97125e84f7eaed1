"""The audit and funnel pages: the funnel per stage with drop-offs, messages with suppression
by reason, holdout, the worksheet, filters, CSV export whose numeric columns sum, the pilot
threshold's banner on every page, and no patient id or contact for the marketing role."""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from orchestrator.api.routes import served_routes
from orchestrator.clock import VirtualClock
from orchestrator.console.figures import AuditFilters, audit_figures
from orchestrator.insight import shown
from orchestrator.insight.worksheet import CSV_COLUMNS, funnel_texts
from orchestrator.roles import Role
from tests.orchestrator.console.conftest import START, Console, bearer, copies, opened
from tests.orchestrator.console.test_roles import PATHS
from tests.samples import ROOT, contact_details, patient_ids

FLOW = "knee-replacement"
PILOT = 5
# Count columns of the worksheet CSV: everything from `entered` on, but the median.
COUNTS = [c for c in CSV_COLUMNS[CSV_COLUMNS.index("entered") :] if not c.endswith("_hours")]


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console whose pilot lowered the small-count threshold."""
    root = tmp_path_factory.mktemp("pilot")
    shutil.copytree(ROOT / "flows", root / "flows")
    with opened(
        f"sqlite:///{root / 'store.db'}",
        root / "flows",
        VirtualClock(START),
        small_count_threshold=PILOT,
    ) as console:
        console.feed(copies(FLOW, 2))
        console.run_until(datetime(2026, 5, 1, tzinfo=UTC))
        yield console


def _get(console: Console, path: str, role: Role = Role.MARKETING) -> str:
    response = console.client.get(path, headers=bearer(role))
    assert response.status_code == 200, (path, response.text[:300])
    return response.text


@pytest.mark.parametrize("role", list(Role))
def test_the_audit_pages_render_for_every_role(console: Console, role: Role) -> None:
    listing = _get(console, "/console/audit", role)

    for flow_id in console.service.flows.current:
        assert f'href="/console/audit/{flow_id}"' in listing
        page = _get(console, f"/console/audit/{flow_id}", role)
        for section in ("funnel", "messages", "holdouts", "worksheet"):
            assert f'<h2 id="{section}">' in page


def test_the_funnel_shows_each_stage_with_its_drop_offs(console: Console) -> None:
    flow = console.service.flows.current[FLOW]
    page = _get(console, f"/console/audit/{FLOW}")
    figures = audit_figures(console.service.store, flow, AuditFilters())

    for stage in flow.stages:
        row = re.search(rf'<tr data-stage="{stage.id}">.*?</tr>', page, re.S)
        assert row is not None
        cells = re.findall(r'<td class="n">([^<]*)</td>', row.group(0))
        funnel = funnel_texts(figures.stage(stage.id), shown)
        assert cells[:5] == [funnel[k].replace("<", "&lt;") for k in funnel]
    assert figures.stage(flow.stages[0].id).entered >= 11


def test_the_filters_narrow_the_figures(console: Console) -> None:
    store = console.service.store
    registry = console.service.flows
    everyone = audit_figures(store, registry.current[FLOW], AuditFilters())
    first = audit_figures(store, registry.version(FLOW, 1), AuditFilters(version=1))
    none_yet = audit_figures(store, registry.current[FLOW], AuditFilters(until=date(2026, 2, 28)))
    email = audit_figures(store, registry.current[FLOW], AuditFilters(channel="email"))

    assert 0 < first.episodes < everyone.episodes
    assert none_yet.episodes == 0
    assert sum(m.sent for m in email.messages) < sum(m.sent for m in everyone.messages)
    page = _get(console, f"/console/audit/{FLOW}?version=1&channel=sms&language=en")
    assert '<option value="1" selected>1</option>' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("version=99", 404),
        ("persona=nobody", 422),
        ("since=2026-13-01", 422),
        ("until=0001-01-01", 422),
        ("channel=fax", 422),
        ("version=0", 422),
        ("version=99999999999999999999", 422),
        ("since=99999-01-01", 422),
        ("until=9999-12-31", 422),
        ("persona=%00", 422),
        ("language=%ED%A0%80", 422),
        ("language=xx", 422),
        ("persona=" + "x" * 5000, 422),
    ],
)
def test_a_filter_that_names_nothing_is_a_clear_4xx(
    console: Console, query: str, expected: int
) -> None:
    for suffix in ("", "/worksheet.csv"):
        response = console.client.get(
            f"/console/audit/{FLOW}{suffix}?{query}", headers=bearer(Role.MARKETING)
        )
        assert response.status_code == expected, (query, response.text)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_export_downloads_the_worksheet_under_the_small_count_rule(
    console: Console,
) -> None:
    response = console.client.get(
        f"/console/audit/{FLOW}/worksheet.csv?channel=sms", headers=bearer(Role.MARKETING)
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = _rows(response.text)
    assert list(rows[0]) == list(CSV_COLUMNS)
    for row in rows:
        for column in COUNTS:
            assert row[column] == "" or row[column] == "<11" or row[column].isdigit(), column
    page = _get(console, f"/console/audit/{FLOW}?channel=sms")
    assert f'href="/console/audit/{FLOW}/worksheet.csv?channel=sms"' in page


def test_the_csv_numeric_columns_parse_as_numbers_and_sum(pilot: Console) -> None:
    # At the pilot's threshold of 5 few cells hide; every shown one is a number.
    flow = pilot.service.flows.current[FLOW]
    figures = audit_figures(pilot.service.store, flow, AuditFilters())
    rows = _rows(_get(pilot, f"/console/audit/{FLOW}/worksheet.csv"))
    messages = [r for r in rows if r["kind"] == "message"]

    hidden = f"<{PILOT}"
    for row in messages:
        cells = {c: row[c] for c in COUNTS[COUNTS.index("scheduled") :]}
        assert all(v == hidden or v.isdigit() for v in cells.values()), cells
        parts = [v for c, v in cells.items() if c.startswith("suppressed_")]
        if hidden not in parts and cells["suppressed"] != hidden:
            assert int(cells["suppressed"]) == sum(int(v) for v in parts)
    sent = [int(r["sent"]) for r in messages if r["sent"] != hidden]
    assert sum(sent) == sum(m.sent for m in figures.messages if not 0 < m.sent < PILOT)
    assert sum(sent) > 0


def _console_pages(console: Console) -> list[str]:
    paths = []
    for route in served_routes(console.client.app):  # type: ignore[arg-type]
        path = route.path
        if (
            path.startswith("/console")
            and "GET" in (route.methods or {"GET"})
            and path not in ("/console", "/console/static")
            and not path.endswith(".csv")
        ):
            paths.append(PATHS.get(path, path))
    return paths


def test_every_console_page_shows_the_pilot_banner_while_the_threshold_is_lowered(
    pilot: Console, console: Console
) -> None:
    # The pilot's store ran one version of each flow: its diff is of version 1 with itself.
    pages = [p.replace("from=1&to=2", "from=1&to=1") for p in _console_pages(pilot)]
    pages.append("/console/patients/nobody-here")  # a 404 is a page too

    assert len(pages) >= 8
    for path in pages:
        lowered = pilot.client.get(path, headers=bearer(Role.ADMIN))
        usual = console.client.get(path, headers=bearer(Role.ADMIN))

        banner = re.search(r'<div class="banner" role="status">([^<]*)</div>', lowered.text)
        assert banner is not None, path
        assert f"counts below {PILOT} are hidden" in banner.group(1)
        assert 'class="banner"' not in usual.text, path


def test_the_marketing_pages_name_no_patient_and_no_contact(console: Console) -> None:
    paths = [p for p in _console_pages(console) if "/patients" not in p]
    for flow_id in console.service.flows.current:
        paths += [
            f"/console/audit/{flow_id}",
            f"/console/audit/{flow_id}?version=1&language=es&channel=email",
            f"/console/audit/{flow_id}/worksheet.csv",
        ]
    text = "".join(_get(console, path) for path in paths)

    assert [p for p in patient_ids() if p in text] == []
    assert [c for c in contact_details() if c in text] == []
    assert not re.search(r"\+1 ?555 ?01\d\d|@example\.org", text)
