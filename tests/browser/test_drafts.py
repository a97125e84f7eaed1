"""A flow's draft edited, checked, simulated and published in the browser, as the admin.

Typed into the editor through the keyboard, so the problems and the what-if
arrive as htmx swaps them in. The cardiology flow is edited, not knee
replacement: the other browser tests read knee replacement's versions.
"""

from __future__ import annotations

import re

import pytest

from orchestrator.insight.compare import KINDS
from orchestrator.roles import Role
from tests.browser.conftest import Served, Visit

pytestmark = pytest.mark.browser

FLOW = "cardiology-consult"
# Typed at the end of the flow: a flow sequence never closed.
TYPO = "\nextra: [oops"
# The fix moves the referral's booking nudge a day later.
MOVED = ("stage.entered + 3d at 10:00", "stage.entered + 4d at 10:00")
# The samples ran in March, two months before the runtime's clock.
DAYS = "120"


def test_an_admin_fixes_a_draft_sees_its_what_if_and_publishes_it(
    served: Served, visit: Visit
) -> None:
    running = served.runtime.flows.current[FLOW].version
    tab = visit(Role.ADMIN)
    page = tab.page
    tab.open(f"/console/flows/{FLOW}/draft")
    editor = page.locator("#draft-text")
    problems = page.locator("#problems")
    # The running version's YAML, numbered as the next version.
    shown = editor.input_value()
    assert f"version: {running + 1}" in shown and shown.count(MOVED[0]) == 1
    tab.screenshot("draft-opened")

    editor.press("Control+End")
    page.keyboard.type(TYPO)
    problem = problems.locator("li", has_text="not valid YAML")
    problem.wait_for()
    tab.screenshot("draft-problem")
    typed = editor.input_value()
    assert typed == shown + TYPO
    last = typed.count("\n") + 1
    assert re.match(rf"{FLOW}\.yaml:{last}:\d+: not valid YAML", problem.inner_text())
    assert problem.get_attribute("data-line") == str(last)

    editor.fill(shown.replace(*MOVED))
    problems.locator("p.ok", has_text="No problems").wait_for()
    tab.screenshot("draft-fixed")

    page.fill("input[name=days]", DAYS)
    page.click("text=Simulate on history")
    referred = page.locator('#whatif table.whatif tr[data-stage="referred"]')
    referred.wait_for()
    tab.screenshot("draft-whatif")
    assert f"Over the last {DAYS} days of history" in page.locator("#whatif").inner_text()
    # Each referral's nudge moved; nothing else changed.
    counts = dict(zip(KINDS, map(int, referred.locator("td.n").all_inner_texts()), strict=True))
    assert counts["moved"] > 0 and sum(counts.values()) == counts["moved"], counts
    assert page.locator("#whatif tr[data-stage]").count() == 1

    with page.expect_navigation(wait_until="load"):
        page.click("text=Publish as the next version")
    assert page.url.endswith(f"/console/flows/{FLOW}/versions")
    tab.screenshot("draft-published")
    newest = page.locator("section.version").first
    assert newest.get_attribute("data-version") == str(running + 1)
    assert f"Version {running + 1} (current)" in newest.locator("h2").inner_text()
    diff = newest.locator("pre.diff").text_content() or ""
    assert [line for line in diff.splitlines() if line.startswith("+") and MOVED[1] in line]

    tab.open(f"/console/flows/{FLOW}")
    tab.screenshot("draft-flow-current")
    assert f"version {running + 1}" in page.locator("h1").inner_text()
    current = page.locator(f'ul.versions li[data-version="{running + 1}"]')
    assert "(current)" in current.inner_text()
    assert served.runtime.flows.current[FLOW].version == running + 1
    assert tab.errors == [] and tab.foreign == [], (tab.errors, tab.foreign)
