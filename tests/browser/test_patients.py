"""A patient's timeline in the browser: operations finds it, marketing is refused it.

Operations searches for the patient on the console's Patients page and lands
on their timeline; marketing is refused the page and the API's JSON timeline
alike, and is shown neither the patient nor their contact details.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from orchestrator.roles import Role
from tests.browser.conftest import PATIENT, Served, Visit
from tests.samples import contact_details

pytestmark = pytest.mark.browser

PAGE = f"/console/patients/{PATIENT}"
TIMELINE = f"/patients/{PATIENT}/timeline"


def test_an_operations_user_finds_a_patients_timeline(served: Served, visit: Visit) -> None:
    store = served.runtime.store
    tab = visit(Role.OPERATIONS)
    page = tab.page
    tab.open("/console/patients")
    page.fill("#patient_id", PATIENT)
    tab.screenshot("patients-search")
    with page.expect_navigation(wait_until="load"):
        page.press("#patient_id", "Enter")
    tab.screenshot("patient-timeline")

    assert urlsplit(page.url).path == PAGE
    assert PATIENT in page.locator("h1").inner_text()
    assert "in knee-replacement" in page.locator("main").inner_text()
    rows = page.locator("#timeline-entries tr[data-kind]")
    kinds = rows.evaluate_all("rows => rows.map(r => r.dataset.kind)")
    times = rows.evaluate_all("rows => rows.map(r => r.dataset.at)")
    # Every event and message of the patient, their episode and its stages, in time order.
    assert kinds.count("event") == len(store.patient_events(PATIENT))
    assert kinds.count("message") == len(store.messages(patient_id=PATIENT)) > 0
    assert kinds.count("episode") == 1 and kinds.count("stage") >= 2
    assert times == sorted(times)
    episode = rows.filter(has=page.locator("td", has_text="episode started"))
    assert "knee-replacement version 1" in episode.inner_text()
    sent = rows.filter(has=page.locator("strong", has_text="sent"))
    assert sent.count() > 0
    assert tab.errors == [] and tab.foreign == [], (tab.errors, tab.foreign)


@pytest.mark.parametrize("path", ["/console/patients", PAGE, TIMELINE])
def test_a_marketing_user_is_refused_the_timeline(visit: Visit, path: str) -> None:
    tab = visit(Role.MARKETING)
    response = tab.open(path)
    tab.screenshot(f"refused-{path}")
    shown = tab.page.content()

    assert response.status == 403, (path, response.status)
    assert PATIENT not in shown
    assert not any(contact in shown for contact in contact_details())
    assert tab.foreign == []
