"""A patient's timeline in the browser: operations finds it, marketing is refused it.

The console's Patients page (issue 15 part 5) is not served yet, so these open
the timeline route the page will be built on, signed in through the console's
form as each role. When `/console/patients` lands, the operations test searches
for the patient there and opens the timeline page instead (marked below).
"""

from __future__ import annotations

import json

import pytest

from orchestrator.roles import Role
from tests.browser.conftest import PATIENT, Visit
from tests.samples import contact_details

pytestmark = pytest.mark.browser

TIMELINE = f"/patients/{PATIENT}/timeline"


def test_an_operations_user_finds_a_patients_timeline(visit: Visit) -> None:
    tab = visit(Role.OPERATIONS)
    # The Patients page goes here: open /console/patients, search for PATIENT, follow
    # the result to the timeline page, and check its events, episodes and messages.
    response = tab.open(TIMELINE)
    tab.screenshot("timeline")

    assert response.status == 200
    timeline = json.loads(tab.page.locator("body").inner_text())
    assert timeline["patient_id"] == PATIENT
    assert [e["flow"] for e in timeline["episodes"]] == ["knee-replacement"]
    assert any(m["status"] == "sent" for m in timeline["messages"]), timeline["messages"]
    assert tab.errors == [] and tab.foreign == []


def test_a_marketing_user_is_refused_the_timeline(visit: Visit) -> None:
    tab = visit(Role.MARKETING)
    response = tab.open(TIMELINE)
    tab.screenshot("timeline-refused")
    shown = tab.page.locator("body").inner_text()

    assert response.status == 403
    assert PATIENT not in shown
    assert not any(contact in shown for contact in contact_details())
