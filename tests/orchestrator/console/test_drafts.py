"""Drafts and publishing through the console's routes, over a real store and runtime.

Each test opens its own store and copy of the flows: publishing changes both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from orchestrator.cli.app import app as cli
from orchestrator.clock import VirtualClock
from orchestrator.event import Channel
from orchestrator.flows.schema import FlowFile
from orchestrator.roles import Role
from orchestrator.service import EmbeddedService
from orchestrator.service.drafts import SharedTemplate, export, publish
from orchestrator.store.published import Published
from tests.orchestrator.console.conftest import START, TOKENS, Console, bearer, copies, opened
from tests.samples import ROOT

FLOW = "knee-replacement"
ADMIN = bearer(Role.ADMIN)
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def place(tmp_path: Path) -> tuple[str, Path]:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    return f"sqlite:///{tmp_path / 'store.db'}", flows


@pytest.fixture
def console(place: tuple[str, Path]) -> Iterator[Console]:
    db, flows = place
    with opened(db, flows, VirtualClock(START)) as console:
        yield console


def _post(console: Console, path: str, headers: dict[str, str] = ADMIN, **form: str) -> Any:
    return console.client.post(
        f"/console/flows/{FLOW}{path}", data=form, headers=headers, follow_redirects=False
    )


def _text(console: Console) -> str:
    return (ROOT / "flows" / f"{FLOW}.yaml").read_text()


def _bookings(first: int, count: int = 1) -> list[dict[str, Any]]:
    return [e for e in copies(FLOW, count, first=first) if e["type"] == "appointment.booked"][
        :count
    ]


def test_edit_shows_an_inline_problem_then_the_fix_publishes(console: Console) -> None:
    page = console.client.get(f"/console/flows/{FLOW}/draft", headers=ADMIN)
    assert page.status_code == 200
    assert 'id="draft-text"' in page.text and "version: 2" in page.text

    broken = _text(console).replace("    category: access\n", "    category: acess\n", 1)
    answer = _post(console, "/draft", text=broken)
    assert answer.status_code == 200
    line = broken.splitlines().index("    category: acess") + 1
    assert f"{FLOW}.yaml:{line}:" in answer.text and "category" in answer.text
    # Refused while broken: nothing is published.
    assert _post(console, "/draft/publish").status_code == 422
    assert console.service.flows.current[FLOW].version == 1

    fixed = _text(console).replace("title: Knee replacement\n", "title: Knee (edited)\n", 1)
    answer = _post(console, "/draft", text=fixed)
    assert "No problems" in answer.text

    published = _post(console, "/draft/publish")
    assert published.status_code == 303
    assert published.headers["location"] == f"/console/flows/{FLOW}/versions"
    current = console.service.flows.current[FLOW]
    assert (current.version, current.title) == (2, "Knee (edited)")

    history = Published(console.service.store.transactions).history(FLOW)
    assert [v.version for v in history] == [2, 1]
    short = hashlib.sha256(TOKENS[Role.ADMIN].encode()).hexdigest()[:8]
    assert history[0].published_by == f"admin:{short}"
    assert history[1].published_by == "file"
    assert "+title: Knee (edited)" in (history[0].diff or "")
    assert history[0].text is not None and "version: 2" in history[0].text
    # The draft is gone, and every role may read the history; no token is on it.
    assert Published(console.service.store.transactions).draft(FLOW) is None
    for role in Role:
        versions = console.client.get(f"/console/flows/{FLOW}/versions", headers=bearer(role))
        assert versions.status_code == 200 and "admin:" + short in versions.text
        assert all(token not in versions.text for token in TOKENS.values())


def test_new_episodes_start_on_the_published_version_running_ones_finish_on_theirs(
    console: Console,
) -> None:
    console.feed(_bookings(first=1))
    console.run_until(console.clock.now() + timedelta(hours=1))
    template = "sms/en/booking_confirmation.j2"
    edited = "{{ org.name }}: DRAFTED booking for {{ appointment.when }}. Reply STOP to opt out."
    assert _post(console, "/draft", text=_text(console)).status_code == 200
    preview = _post(console, "/draft/template", name=template, text=edited)
    assert preview.status_code == 200
    assert "DRAFTED booking" in preview.text and "segment" in preview.text
    assert _post(console, "/draft/publish").status_code == 303

    console.feed(_bookings(first=2))
    console.run_until(console.clock.now() + timedelta(hours=1))

    on = {j.patient_id: v for v, j in console.service.store.flow_journeys(FLOW)}
    assert on["p-kr-001-001"] == 1 and on["p-kr-001-002"] == 2
    store = console.service.store
    bodies = {e.key: e.body for e in store.outbox() if e.channel == "sms"}
    confirmations = {
        m.flow_version: bodies[m.key]
        for m in store.messages()
        if m.message == "consult_confirmation" and m.recipient == "patient"
    }
    assert "your visit is booked" in confirmations[1] and "DRAFTED" not in confirmations[1]
    assert "DRAFTED booking" in confirmations[2]


def test_a_template_edited_in_a_draft_never_changes_a_published_version(console: Console) -> None:
    template = "sms/en/booking_confirmation.j2"
    _post(console, "/draft", text=_text(console))
    _post(console, "/draft/template", name=template, text="{{ org.name }}: v2 text. Reply STOP")
    assert _post(console, "/draft/publish").status_code == 303
    # A new draft edits the same template: versions 1 and 2 still render their own.
    _post(console, "/draft", text=_text(console))
    _post(console, "/draft/template", name=template, text="{{ org.name }}: v3 draft. Reply STOP")
    dispatcher = console.service.dispatcher
    v1 = dispatcher.templates_for(FLOW, 1).text_of(template) or ""
    v2 = dispatcher.templates_for(FLOW, 2).text_of(template) or ""
    assert "your visit is booked" in v1
    assert "v2 text" in v2
    assert Published(console.service.store.transactions).version(FLOW, 2).templates[template] == (  # type: ignore[union-attr]
        "{{ org.name }}: v2 text. Reply STOP"
    )
    assert dispatcher.templates_for(FLOW, 2).exists(Channel.SMS, "en", "booking_confirmation")


def test_rollback_publishes_the_old_source_as_the_next_version(console: Console) -> None:
    _post(console, "/draft", text=_text(console).replace("title: Knee replacement\n", "title: B\n"))
    assert _post(console, "/draft/publish").status_code == 303
    rolled = _post(console, "/rollback", version="1")
    assert rolled.status_code == 303

    store = console.service.store
    sources = {v: s for (f, v), (_, s) in store.flow_versions().items() if f == FLOW}
    assert sorted(sources) == [1, 2, 3]
    one = FlowFile.model_validate_json(sources[1])
    three = FlowFile.model_validate_json(sources[3])
    assert three == one.model_copy(update={"version": 3})
    assert console.service.flows.current[FLOW].title == "Knee replacement"
    assert _post(console, "/rollback", version="99").status_code == 404


def test_a_second_process_takes_up_a_published_version_on_its_next_tick(
    console: Console, place: tuple[str, Path]
) -> None:
    db, flows = place
    with opened(db, flows, VirtualClock(START)) as other:
        assert other.service.flows.current[FLOW].version == 1
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/publish")
        assert other.service.flows.current[FLOW].version == 1
        other.service.tick()
        assert other.service.flows.current[FLOW].version == 2
        assert other.service.processor.flows is other.service.flows
        assert other.service.dispatcher.flows is other.service.flows
        # Nothing new: the tick keeps the registry it has.
        kept = other.service.flows
        other.service.tick()
        assert other.service.flows is kept


def test_a_process_that_does_not_dispatch_still_takes_up_a_published_version(
    console: Console, place: tuple[str, Path]
) -> None:
    # A Kafka worker with ORCHESTRATOR_DISPATCH=off: its loop ticks for the versions,
    # or its new episodes would start on the old version for good.
    db, flows = place
    with opened(db, flows, VirtualClock(START), dispatch=False) as other:
        console.feed(_bookings(first=0))
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/publish")
        console.clock.move_to(START + timedelta(days=30))
        other.clock.move_to(START + timedelta(days=30))

        other.service.start()  # its loop's first tick runs at once, on its thread
        try:
            give_up = time.monotonic() + 20
            while other.service.flows.current[FLOW].version != 2:
                assert time.monotonic() < give_up, "the loop never took up version 2"
                time.sleep(0.01)
        finally:
            other.service.stop()

        # And it sent nothing: what fell due is left to the dispatchers.
        assert {m.status for m in other.service.store.messages()} <= {"scheduled", "cancelled"}


def test_a_file_older_than_the_published_version_is_reported_and_export_fixes_it(
    console: Console, place: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, flows = place
    _post(console, "/draft", text=_text(console).replace("title: Knee replacement\n", "title: C\n"))
    _post(console, "/draft/publish")
    with caplog.at_level(logging.WARNING), opened(db, flows, VirtualClock(START)) as restarted:
        # The file (version 1) does not replace the published version 2.
        assert restarted.service.flows.current[FLOW].version == 2
        assert restarted.service.flows.behind(FLOW) == str(flows / f"{FLOW}.yaml")
        page = restarted.client.get(f"/console/flows/{FLOW}", headers=bearer(Role.MARKETING))
        assert f"orchestrator flows export {FLOW}" in page.text
        assert "published in the console" in page.text.lower()
    assert any(r.message == "flows.file_behind" for r in caplog.records)

    env = {
        "ORCHESTRATOR_DB": db,
        "ORCHESTRATOR_FLOWS": str(flows),
        "ORCHESTRATOR_TEMPLATES": str(ROOT / "templates"),
    }
    result = CliRunner().invoke(cli, ["flows", "export", FLOW], env=env)
    assert result.exit_code == 0, result.output
    assert "title: C" in (flows / f"{FLOW}.yaml").read_text()
    with opened(db, flows, VirtualClock(START)) as exported:
        assert exported.service.flows.behind(FLOW) is None
        assert exported.service.flows.current[FLOW].title == "C"


def test_the_what_if_compares_the_draft_on_a_sample_and_on_history(console: Console) -> None:
    console.feed(copies(FLOW, 1, first=5))
    console.run_until(datetime(2026, 4, 20, tzinfo=UTC))
    text = _text(console).replace(
        "      - id: consult_confirmation\n",
        "      - id: consult_confirmation\n        holdout: 50\n",
        1,
    )
    _post(console, "/draft", text=text)
    on_sample = _post(console, "/draft/whatif", sample=f"{FLOW}.jsonl")
    assert on_sample.status_code == 200, on_sample.text
    assert 'data-stage="consult_booked"' in on_sample.text
    on_history = _post(console, "/draft/whatif", days="60")
    assert on_history.status_code == 200, on_history.text
    assert "last 60 days" in on_history.text
    assert _post(console, "/draft/whatif", days="0").status_code == 422
    assert _post(console, "/draft/whatif", sample="../../etc/passwd").status_code == 404


_HOSTILE_YAML = st.one_of(
    st.text(max_size=200),
    st.integers(1, 40).map(lambda n: "id: x\nstages: " + "[" * (n * 100) + "]" * (n * 100)),
    st.integers(1, 40).map(lambda n: "".join(" " * i + "a:\n" for i in range(n * 5))),
    st.just(
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    ),
    st.sampled_from(["\x00", "id: x\x00\n", "a: &a [*a]", "\ud800", "{" * 3000]),
    st.integers(1, 3).map(lambda n: "x: " + "y" * (n * 200_000)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_HOSTILE_YAML)
def test_hostile_yaml_is_a_problem_or_a_4xx_never_a_500(console: Console, text: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    from urllib.parse import quote_from_bytes

    answer = console.client.post(
        f"/console/flows/{FLOW}/draft",
        content=b"text=" + quote_from_bytes(body).encode(),
        headers={**ADMIN, **FORM},
    )
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        assert "problems" in answer.text
    assert console.client.get(f"/console/flows/{FLOW}/draft", headers=ADMIN).status_code == 200


def test_only_the_admin_edits_and_publishes(console: Console) -> None:
    for role in (Role.OPERATIONS, Role.MARKETING):
        assert (
            console.client.get(f"/console/flows/{FLOW}/draft", headers=bearer(role)).status_code
            == 403
        )
        for path in ("/draft", "/draft/publish", "/rollback", "/draft/template", "/draft/whatif"):
            assert _post(console, path, headers=bearer(role), text="x").status_code == 403
    assert console.service.flows.current[FLOW].version == 1


def test_publishing_with_no_draft_is_refused(console: Console) -> None:
    assert _post(console, "/draft/publish").status_code == 409


def test_the_service_built_twice_on_one_store_keeps_file_versions(place: tuple[str, Path]) -> None:
    # A plain restart with nothing published changes nothing.
    db, flows = place
    with opened(db, flows, VirtualClock(START)) as first:
        assert first.service.flows.behind(FLOW) is None
    with opened(db, flows, VirtualClock(START)) as second:
        assert second.service.flows.current[FLOW].version == 1
        assert isinstance(second.service, EmbeddedService)


def test_a_second_process_takes_up_a_version_an_event_needs_before_its_tick(
    console: Console, place: tuple[str, Path]
) -> None:
    db, flows = place
    with opened(db, flows, VirtualClock(START)) as other:
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/publish")
        booked = _bookings(first=3)
        console.feed(booked)
        # The same patient's next event reaches the other process, which has not ticked.
        later = [e for e in copies(FLOW, 1, first=3) if e["type"] != "appointment.booked"][:1]
        answer = other.client.post("/events", json=later[0], headers=ADMIN)

        assert answer.status_code == 202, answer.text
        assert answer.json()["results"][0]["status"] == "accepted", answer.text
        assert other.service.flows.current[FLOW].version == 2
        on = {j.patient_id: v for v, j in other.service.store.flow_journeys(FLOW)}
        assert on["p-kr-001-003"] == 2


def test_a_quoted_version_key_is_published_as_the_version_recorded(console: Console) -> None:
    text = _text(console).replace("\nversion: 1\n", '\n"version": 1\n')
    _post(console, "/draft", text=text.replace("title: Knee replacement\n", "title: Q\n", 1))
    assert _post(console, "/draft/publish").status_code == 303
    current = console.service.flows.current[FLOW]
    assert (current.version, current.title) == (2, "Q")
    assert console.service.flows.version(FLOW, 2).title == "Q"


def test_a_version_publishing_cannot_set_is_refused_not_recorded_as_another(
    console: Console,
) -> None:
    # JSON is YAML; its `"version": 1` is inside one line, where no rewrite reaches.
    data = yaml.safe_load(_text(console))
    data["title"] = "J"
    _post(console, "/draft", text=json.dumps(data))
    refused = _post(console, "/draft/publish")
    assert refused.status_code == 422
    assert "version" in refused.text and "could not be set" in refused.text
    assert Published(console.service.store.transactions).newest()[FLOW] == 1
    assert console.service.flows.current[FLOW].title == "Knee replacement"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ 1/0 }}",
        "{{ range(10**9)|list }}",
        "{{ 'x' * 10**9 }}",
        "{{ 2**100000000 }}",
        "{{ org.name",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{{ ('x' * 100000).replace('x', 'x' * 100000) }}",
    ],
)
def test_a_hostile_template_is_a_problem_on_every_draft_route_never_a_500(
    console: Console, template: str
) -> None:
    name = "sms/en/booking_confirmation.j2"
    _post(console, "/draft", text=_text(console))
    saved = _post(console, "/draft/template", name=name, text=template)
    assert saved.status_code == 200
    assert 'class="problems"' in saved.text
    page = console.client.get(f"/console/flows/{FLOW}/draft", headers=ADMIN)
    assert page.status_code == 200
    assert _post(console, "/draft", text=_text(console)).status_code == 200
    assert _post(console, "/draft/whatif", days="3").status_code == 422
    assert _post(console, "/draft/publish").status_code == 422
    # The draft is not jammed: a good template mends it and it publishes.
    _post(console, "/draft/template", name=name, text="{{ org.name }}: booked. Reply STOP")
    assert _post(console, "/draft/publish").status_code == 303


def test_a_template_too_expensive_to_render_is_a_problem_at_its_line_as_you_type(
    console: Console,
) -> None:
    name = "sms/en/booking_confirmation.j2"
    nested = "{{ org.name }}\n{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}"
    _post(console, "/draft", text=_text(console))

    preview = _post(console, "/draft/template", name=name, text=nested + "{% endfor %}")
    checked = _post(console, "/draft", text=_text(console))

    said = f"template {name} line 2: too expensive: more than 10,000 steps"
    for answer in (preview, checked):
        assert answer.status_code == 200
        assert said in answer.text
    # The check reads as `flows validate` does: the flow file, line and column, path.
    assert f"{FLOW}.yaml:" in checked.text and ".template" in checked.text


def test_rollback_leaves_the_draft_being_edited(console: Console) -> None:
    _post(console, "/draft", text=_text(console).replace("title: Knee replacement\n", "title: B\n"))
    assert _post(console, "/draft/publish").status_code == 303
    half = _text(console).replace("title: Knee replacement\n", "title: half-finished\n")
    _post(console, "/draft", text=half)
    assert _post(console, "/rollback", version="1").status_code == 303
    kept = Published(console.service.store.transactions).draft(FLOW)
    assert kept is not None and "title: half-finished" in kept.text


def test_publishing_keeps_a_draft_edited_after_it_was_read(console: Console) -> None:
    published = Published(console.service.store.transactions)
    _post(console, "/draft", text=_text(console).replace("title: Knee replacement\n", "title: A\n"))
    read = published.draft(FLOW)
    assert read is not None
    # Someone saves an edit between the publisher's read and its publishing.
    later = _text(console).replace("title: Knee replacement\n", "title: later\n")
    _post(console, "/draft", text=later)
    service = console.service
    publish(service, FLOW, read.text, service.dispatcher.templates_for(FLOW, 1), "admin:x", read)
    kept = published.draft(FLOW)
    assert kept is not None and "title: later" in kept.text
    # Unchanged since read, it goes with the publishing.
    again = published.draft(FLOW)
    assert again is not None
    publish(service, FLOW, again.text, service.dispatcher.templates_for(FLOW, 2), "admin:x", again)
    assert published.draft(FLOW) is None


def test_export_refuses_to_change_a_template_other_flows_send(
    place: tuple[str, Path], tmp_path: Path
) -> None:
    db, flows = place
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    shared, own = "sms/en/booking_confirmation.j2", "sms/en/knee_day_before.j2"
    context = {
        "org": {"name": "Riverside", "phone": "+1 555 0100", "portal_url": "https://example.org"},
        "appointment": {"when": "Monday", "location": "Clinic"},
        "links": {"reschedule": "https://example.org/r"},
    }
    with opened(db, flows, VirtualClock(START), templates=templates) as console:
        before = console.service.dispatcher.templates_for("cardiology-consult", 1)
        rendered = before.render(Channel.SMS, "en", "booking_confirmation", context).body
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/template", name=shared, text="{{ org.name }}: KNEE ONLY. Reply STOP")
        assert _post(console, "/draft/publish").status_code == 303

        published = Published(console.service.store.transactions)
        with pytest.raises(SharedTemplate) as raised:
            export(published, FLOW, flows, templates)
        assert raised.value.name == shared
        assert "cardiology-consult v1" in raised.value.flows
        assert "cardiology-consult v1" in str(raised.value)
        assert "version: 1\n" in (flows / f"{FLOW}.yaml").read_text()  # nothing written
        env = {
            "ORCHESTRATOR_DB": db,
            "ORCHESTRATOR_FLOWS": str(flows),
            "ORCHESTRATOR_TEMPLATES": str(templates),
        }
        result = CliRunner().invoke(cli, ["flows", "export", FLOW], env=env)
        assert result.exit_code == 1
        assert "nothing written" in result.output and shared in result.output
        after = console.service.dispatcher.templates_for("cardiology-consult", 1)
        assert after.render(Channel.SMS, "en", "booking_confirmation", context).body == rendered

        # The shared one as it was and a template of this flow's own: that exports.
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/template", name=shared, text=before.text_of(shared) or "")
        _post(console, "/draft/template", name=own, text="{{ org.name }}: see you. Reply STOP")
        assert _post(console, "/draft/publish").status_code == 303
        written = export(published, FLOW, flows, templates)
        assert written == [flows / f"{FLOW}.yaml", templates / own]
        assert "see you" in (templates / own).read_text()


_DAY_BEFORE = "sms/en/knee_day_before.j2"
_CONTEXT = {
    "org": {"name": "Riverside", "phone": "+1 555 0100", "portal_url": "https://example.org"},
    "appointment": {"when": "Monday", "location": "Clinic"},
    "recipient": {"is_caregiver": False},
    "links": {"directions": "https://example.org/d", "guide": "https://example.org/g"},
}


def _day_before(service: EmbeddedService, version: int) -> str:
    templates = service.dispatcher.templates_for(FLOW, version)
    return templates.render(Channel.SMS, "en", "knee_day_before", _CONTEXT).body


def test_export_never_changes_what_an_older_version_of_the_flow_sends(
    place: tuple[str, Path], tmp_path: Path
) -> None:
    db, flows = place
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    with opened(db, flows, VirtualClock(START), templates=templates) as console:
        # Version 1, read from the file, has an episode running.
        console.feed(_bookings(first=1))
        sent_by_v1 = _day_before(console.service, 1)
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/template", name=_DAY_BEFORE, text="{{ org.name }}: v2. Reply STOP")
        assert _post(console, "/draft/publish").status_code == 303

        written = export(Published(console.service.store.transactions), FLOW, flows, templates)

        assert templates / _DAY_BEFORE in written
        assert "v2" in (templates / _DAY_BEFORE).read_text()
        assert _day_before(console.service, 1) == sent_by_v1
        assert _day_before(console.service, 2) == "Riverside: v2. Reply STOP"
    # A process started on the exported files still sends version 1's text for version 1.
    with opened(db, flows, VirtualClock(START), templates=templates) as restarted:
        assert restarted.service.flows.current[FLOW].version == 2
        assert _day_before(restarted.service, 1) == sent_by_v1


def test_export_refuses_to_change_a_template_an_older_version_reads_from_the_file(
    place: tuple[str, Path], tmp_path: Path
) -> None:
    db, flows = place
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    with opened(db, flows, VirtualClock(START), templates=templates) as console:
        _post(console, "/draft", text=_text(console))
        _post(console, "/draft/template", name=_DAY_BEFORE, text="{{ org.name }}: v2. Reply STOP")
        assert _post(console, "/draft/publish").status_code == 303
        # As a store published before versions kept their templates: version 1 has none.
        engine = console.service.store.engine
        with engine.begin() as c:
            c.execute(
                sa.text(
                    "UPDATE flow_versions SET templates = NULL WHERE flow_id = :f AND version = 1"
                ),
                {"f": FLOW},
            )
        before = (templates / _DAY_BEFORE).read_text()

        with pytest.raises(SharedTemplate) as raised:
            export(Published(console.service.store.transactions), FLOW, flows, templates)

        assert raised.value.name == _DAY_BEFORE
        assert raised.value.flows == (f"{FLOW} v1",)
        assert (templates / _DAY_BEFORE).read_text() == before
        assert "version: 1\n" in (flows / f"{FLOW}.yaml").read_text()  # nothing written


def test_a_registry_older_than_the_installed_one_is_never_installed(console: Console) -> None:
    service = console.service
    stale = service.flows  # built before a publish, installed after it
    _post(console, "/draft", text=_text(console))
    assert _post(console, "/draft/publish").status_code == 303

    service.use_flows(stale)

    assert service.flows.current[FLOW].version == 2
    assert service.processor.flows is service.flows
    assert service.dispatcher.flows is service.flows


def test_the_what_if_paces_as_run_does(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.runtime.pacing import plan_for
    from orchestrator.simulate import Simulator

    console.feed(copies(FLOW, 1, first=7))  # history for the what-if over the last days
    paced = console.service.settings.model_copy(update={"sms_rate": 0.5})
    monkeypatch.setattr(console.service, "settings", paced)
    seen: list[object] = []
    built = Simulator.__init__

    def spy(self: Simulator, *args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("pacing"))
        built(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "__init__", spy)
    _post(console, "/draft", text=_text(console))
    assert _post(console, "/draft/whatif", sample=f"{FLOW}.jsonl").status_code == 200
    assert _post(console, "/draft/whatif", days="60").status_code == 200
    assert len(seen) == 4  # two plays of the sample, two of the history
    assert all(plan == plan_for(paced) for plan in seen)
    assert plan_for(paced).senders
