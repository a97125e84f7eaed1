"""The HTTP service in process: ingest, bad input, the token, health, metrics and the read routes."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store import SqlStore, connect
from tests import store_reads
from tests.live import TestClient
from tests.samples import (
    ROOT,
    SAMPLE_FILES,
    contact_details,
    patient_ids,
    sample_events,
    sample_ndjson,
)

# Before every sample event: the streams' messages all lie ahead of the clock.
START = datetime(2026, 3, 1, tzinfo=UTC)
NDJSON = {"content-type": "application/x-ndjson"}
TOKEN = "t0ken-for-the-tests"


@dataclass
class Api:
    service: EmbeddedService
    clock: VirtualClock
    client: TestClient

    def post_sample(self, name: str) -> list[dict[str, Any]]:
        response = self.client.post("/events", content=sample_ndjson(name), headers=NDJSON)
        assert response.status_code == 202, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def dispatch_until(self, until: datetime) -> None:
        """Move the clock an hour at a time to `until`, dispatching what falls due."""
        while self.clock.now() < until:
            self.clock.advance(timedelta(hours=1))
            while self.service.dispatcher.tick():
                pass

    @property
    def store(self) -> SqlStore:
        return self.service.store


OpenApi = Callable[..., Api]


@pytest.fixture
def open_api(tmp_path: Path) -> Iterator[OpenApi]:
    """Opens the app over a fresh, migrated SQLite store (or `db`); settings may be overridden."""
    with ExitStack() as stack:
        opened = 0

        def open_(*, start: datetime = START, **overrides: Any) -> Api:
            nonlocal opened
            opened += 1
            clock = VirtualClock(start)
            settings = Settings(
                db=overrides.pop("db", f"sqlite:///{tmp_path / f'store-{opened}.db'}"),
                flows=ROOT / "flows",
                templates=ROOT / "templates",
                **overrides,
            )
            service = EmbeddedService.build(settings, clock=clock)
            stack.callback(service.store.engine.dispose)
            client = stack.enter_context(TestClient(create_app(service, run_dispatcher=False)))
            return Api(service, clock, client)

        yield open_


@pytest.fixture
def api(open_api: OpenApi) -> Api:
    return open_api()


def event(index: int = 0, **changes: Any) -> dict[str, Any]:
    """A cardiology sample event (the first by default), with top-level fields changed."""
    data = sample_events("cardiology-consult")[index]
    data.update(changes)
    return data


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def without_patient_id(data: dict[str, Any]) -> dict[str, Any]:
    del data["patient"]["id"]
    return data


def assert_no_contact_details(text: str) -> None:
    leaked = sorted(value for value in contact_details() if value in text)
    assert not leaked, f"contact details in the answer: {leaked}"


# -- ingest -----------------------------------------------------------------------------


def test_one_event_is_accepted(api: Api) -> None:
    response = api.client.post("/events", json=event())

    assert response.status_code == 202
    assert response.json() == {"results": [{"index": 0, "id": "evt-cc-0001", "status": "accepted"}]}


def test_the_same_event_again_is_a_duplicate_and_changes_nothing(api: Api) -> None:
    api.client.post("/events", json=event())
    messages = api.store.messages()

    response = api.client.post("/events", json=event())

    assert response.status_code == 202
    assert response.json()["results"] == [{"index": 0, "id": "evt-cc-0001", "status": "duplicate"}]
    assert api.store.messages() == messages


def test_an_array_gets_a_result_per_event_in_order(api: Api) -> None:
    events = [event(0), event(1), event(2)]

    response = api.client.post("/events", json=events)

    assert response.status_code == 202
    assert response.json()["results"] == [
        {"index": i, "id": e["id"], "status": "accepted"} for i, e in enumerate(events)
    ]


def test_ndjson_gets_a_result_per_line_and_skips_blank_lines(api: Api) -> None:
    events = [event(0), event(1), event(2)]
    body = ndjson(events[0], events[1]) + b"\n" + ndjson(events[2])

    response = api.client.post("/events", content=body, headers=NDJSON)

    assert response.status_code == 202
    assert [(r["index"], r["id"], r["status"]) for r in response.json()["results"]] == [
        (0, events[0]["id"], "accepted"),
        (1, events[1]["id"], "accepted"),
        (2, events[2]["id"], "accepted"),
    ]


def test_a_sample_stream_as_ndjson_is_accepted_with_its_repeated_event_a_duplicate(
    api: Api,
) -> None:
    results = api.post_sample("cardiology-consult")

    assert Counter(r["status"] for r in results) == {"accepted": 21, "duplicate": 1}
    assert api.store.messages(), "the stream scheduled nothing"


def test_a_sample_stream_that_arrives_after_its_appointments_is_accepted(
    open_api: OpenApi,
) -> None:
    # A backfill: every appointment has passed, so early messages expire as they are
    # scheduled, and a later reschedule in the same batch schedules one of them again.
    late = open_api(start=datetime(2026, 6, 1, tzinfo=UTC))

    with TestClient(late.client.app, raise_server_exceptions=False) as client:
        response = client.post("/events", content=sample_ndjson("knee-replacement"), headers=NDJSON)

    assert response.status_code == 202, response.text
    statuses = Counter(r["status"] for r in response.json()["results"])
    assert statuses == {"accepted": 30, "duplicate": 1}


@pytest.mark.parametrize(
    ("content_type", "where"), [("application/json", "item 1"), ("application/x-ndjson", "line 2")]
)
def test_one_bad_event_in_a_batch_is_rejected_and_kept_and_the_rest_are_accepted(
    api: Api, content_type: str, where: str
) -> None:
    bad = without_patient_id(event(1))
    events = [event(0), bad, event(2)]
    body = json.dumps(events).encode() if content_type == "application/json" else ndjson(*events)

    response = api.client.post("/events", content=body, headers={"content-type": content_type})

    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1]["id"] == bad["id"]
    assert results[1]["errors"] == ["patient.id: Field required"]
    [kept] = store_reads.rejected(api.store)
    assert kept.reason.startswith(f"{where}: event {bad['id']}: patient.id:")
    assert json.loads(kept.body) == bad


def test_a_reschedule_naming_the_patient_by_id_alone_keeps_what_the_store_knows(
    open_api: OpenApi, store_url: str
) -> None:
    api = open_api(db=store_url)
    booked = event(2)  # p-cc-001: phone, email, Spanish, a caregiver for transport
    assert (booked["type"], booked["patient"]["language"]) == ("appointment.booked", "es")
    new_start = "2026-03-17T10:30:00-05:00"
    rescheduled = {
        "id": "evt-cc-resched",
        "type": "appointment.rescheduled",
        "occurred_at": "2026-03-04T09:00:00-06:00",
        "source": "fhir",
        "patient": {"id": "p-cc-001"},
        "appointment": {"id": "a-cc-001", "start": new_start, "service": "cardiology.consult"},
    }

    response = api.client.post("/events", json=[booked, rescheduled])
    assert response.status_code == 202, response.text
    api.dispatch_until(datetime.fromisoformat(new_start))

    patient = store_reads.patient(api.store, "p-cc-001")
    assert patient is not None
    assert (patient.phone, patient.email, patient.language) == (
        booked["patient"]["phone"],
        booked["patient"]["email"],
        "es",
    )
    assert len(patient.caregivers) == 1
    audit = api.store.audit()
    assert [a.reason for a in audit if a.status == "suppressed"] == []
    sent = [a for a in audit if a.status == "sent" and a.recipient == "patient"]
    assert sent and {a.language for a in sent} == {"es"}
    assert any(a.status == "sent" and a.recipient.startswith("caregiver:") for a in audit)


def test_a_batch_of_only_bad_events_is_422_with_a_result_per_event(api: Api) -> None:
    events = [event(0, type="appointment.teleported"), without_patient_id(event(1))]

    response = api.client.post("/events", json=events)

    assert response.status_code == 422
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    assert results[0]["errors"][0].startswith("type: unknown event type")
    assert results[1]["errors"] == ["patient.id: Field required"]
    assert len(store_reads.rejected(api.store)) == 2


def _naive_occurred_at() -> dict[str, Any]:
    return event(occurred_at="2026-03-02T09:10:00")


def _latin1_event() -> bytes:
    data = event(0)
    data["attributes"]["note"] = "Clínica del Corazón"
    return json.dumps(data, ensure_ascii=False).encode("latin-1")


# (name, body, content type, status, what the error must say)
BAD_BODIES: list[tuple[str, Callable[[], bytes], str, int, list[str]]] = [
    (
        "malformed_json",
        lambda: json.dumps(event())[:150].encode(),
        "application/json",
        400,
        ["body: not JSON (at position "],
    ),
    (
        "unknown_type",
        lambda: json.dumps(event(type="appointment.teleported")).encode(),
        "application/json",
        422,
        ["type: unknown event type; expected one of ", "appointment.booked"],
    ),
    (
        "missing_patient_id",
        lambda: json.dumps(without_patient_id(event())).encode(),
        "application/json",
        422,
        ["patient.id: Field required"],
    ),
    (
        "naive_timestamp",
        lambda: json.dumps(_naive_occurred_at()).encode(),
        "application/json",
        422,
        ["occurred_at: timestamp has no UTC offset"],
    ),
    (
        "not_utf8",
        _latin1_event,
        "application/json",
        400,
        ["body: not UTF-8 (at byte "],
    ),
    ("empty", lambda: b"", "application/json", 400, ["body: empty"]),
    ("blank", lambda: b" \n\n ", "application/x-ndjson", 400, ["body: empty"]),
]


def test_an_ndjson_line_that_is_not_json_is_rejected_alone_and_the_others_go_on(api: Api) -> None:
    body = ndjson(event(0)) + json.dumps(event(1))[:150].encode() + b"\n" + ndjson(event(2))

    response = api.client.post(
        "/events", content=body, headers={"content-type": "application/x-ndjson"}
    )

    assert response.status_code == 202, response.text
    statuses = [(r["index"], r["status"]) for r in response.json()["results"]]
    assert statuses == [(0, "accepted"), (1, "rejected"), (2, "accepted")]
    assert response.json()["results"][1]["errors"][0].startswith("not JSON (at position ")
    [kept] = store_reads.rejected(api.service.store)
    assert kept.reason.startswith("line 2: not JSON (at position ")
    assert_no_contact_details(response.text)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_input_gets_a_clear_error_and_is_kept_without_echoing_contact_details(
    api: Api, body: Callable[[], bytes], content_type: str, status: int, says: list[str]
) -> None:
    sent = body()

    response = api.client.post("/events", content=sent, headers={"content-type": content_type})

    assert response.status_code == status, response.text
    if status == 400:
        error = response.json()["error"]
    else:
        [result] = response.json()["results"]
        assert result["status"] == "rejected" and result["id"] == "evt-cc-0001"
        error = "; ".join(result["errors"])
    assert all(part in error for part in says), error
    assert_no_contact_details(response.text)
    [kept] = store_reads.rejected(api.store)
    assert kept.source == "api"
    assert all(part in kept.reason for part in says), kept.reason
    if status == 400:
        assert kept.body == sent
    else:
        assert json.loads(kept.body) == json.loads(sent)
    assert api.store.messages() == []


def test_invalid_contact_details_are_named_by_field_and_not_echoed(api: Api) -> None:
    data = event()
    data["patient"]["phone"] = "+1555010199999"
    data["patient"]["email"] = "ana.morales@@example.org"

    response = api.client.post("/events", json=data)

    assert response.status_code == 422
    errors = response.json()["results"][0]["errors"]
    assert [e.split(":")[0] for e in errors] == ["patient.phone", "patient.email"]
    assert "+1555010199999" not in response.text
    assert "ana.morales@@example.org" not in response.text
    assert "ana.morales@@example.org" not in store_reads.rejected(api.store)[0].reason


@pytest.mark.parametrize("sending", ["with_content_length", "streamed"])
def test_a_body_over_the_limit_is_413_and_its_start_is_kept(
    open_api: OpenApi, sending: str
) -> None:
    small = open_api(max_body_bytes=1024)
    body = sample_ndjson("cardiology-consult")
    assert len(body) > 1024
    content = body if sending == "with_content_length" else iter([body])

    response = small.client.post("/events", content=content, headers=NDJSON)

    assert response.status_code == 413
    assert response.json() == {"error": "body over the limit of 1024 bytes"}
    assert_no_contact_details(response.text)
    [kept] = store_reads.rejected(small.store)
    assert kept.reason == "body over the limit of 1024 bytes"
    assert len(kept.body) >= 1024, "the start of the body was not kept"
    assert body.startswith(kept.body)
    assert small.store.messages() == []


# -- the bearer token -----------------------------------------------------------------------

GUARDED = [
    ("POST", "/events"),
    ("GET", "/audit"),
    ("GET", "/outbox"),
    ("GET", "/metrics"),
    ("GET", "/patients/x/timeline"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
]


@pytest.fixture
def guarded(open_api: OpenApi) -> Api:
    """An app with a token, holding one journey for patient "x"."""
    guarded = open_api(api_token=TOKEN)
    data = event()
    data["patient"]["id"] = "x"
    response = guarded.client.post(
        "/events", json=data, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 202
    return guarded


def _call(api: Api, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "POST":
        data = event(1)
        data["patient"]["id"] = "x"
        return api.client.post(path, json=data, headers=headers)
    return api.client.get(path, headers=headers)


WRONG_AUTHORIZATIONS = [
    None,
    "Bearer wrong-token",
    f"Bearer {TOKEN}x",
    f"Basic {TOKEN}",
    TOKEN,
    "Bearer",
    "Bearer ",
]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_with_a_token_set_a_route_refuses_a_missing_or_wrong_token(
    guarded: Api, method: str, path: str
) -> None:
    messages = guarded.store.messages()
    for authorization in WRONG_AUTHORIZATIONS:
        headers = {"authorization": authorization} if authorization is not None else {}

        response = _call(guarded, method, path, headers)

        assert response.status_code == 401, authorization
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text
    assert guarded.store.messages() == messages


def test_with_a_token_set_every_route_lets_the_right_token_through(guarded: Api) -> None:
    for method, path in GUARDED:
        response = _call(guarded, method, path, {"authorization": f"Bearer {TOKEN}"})

        assert response.status_code == (202 if method == "POST" else 200), (path, response.text)


def test_with_a_token_set_the_health_checks_need_none(guarded: Api) -> None:
    assert guarded.client.get("/healthz").status_code == 200
    assert guarded.client.get("/readyz").status_code == 200


def test_without_a_token_set_no_route_asks_for_one(api: Api) -> None:
    api.client.post("/events", json=event())
    paths = ("/audit", "/outbox", "/metrics", "/patients/p-cc-001/timeline")
    for path in (*paths, "/openapi.json", "/docs", "/redoc"):
        assert api.client.get(path).status_code == 200, path


def test_with_a_token_set_the_openapi_description_is_served_whole_to_the_token(
    guarded: Api,
) -> None:
    response = guarded.client.get("/openapi.json", headers={"authorization": f"Bearer {TOKEN}"})

    assert "/events" in response.json()["paths"]
    assert "/openapi.json" not in response.json()["paths"]


# -- health ---------------------------------------------------------------------------------


def test_healthz_answers_ok(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_store(api: Api) -> None:
    response = api.client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_on_a_store_whose_schema_is_not_migrated(api: Api, tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        unmigrated = dataclasses.replace(api.service, store=SqlStore(engine))
        with TestClient(create_app(unmigrated, run_dispatcher=False)) as client:
            ready = client.get("/readyz")
            alive = client.get("/healthz")
    finally:
        engine.dispose()

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "store": "migrations pending"}
    assert alive.status_code == 200


def test_readyz_is_503_when_the_store_cannot_be_reached(api: Api, tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'no-such-dir' / 'store.db'}")
    try:
        unreachable = dataclasses.replace(api.service, store=SqlStore(engine))
        with TestClient(create_app(unreachable, run_dispatcher=False)) as client:
            ready = client.get("/readyz")
            metrics = client.get("/metrics")
    finally:
        engine.dispose()

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "store": "StoreError"}
    assert metrics.status_code == 200, "a scrape answers while the store is down"


# -- metrics --------------------------------------------------------------------------------

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def test_metrics_count_events_and_messages_with_no_patient_data_in_labels(api: Api) -> None:
    for path in SAMPLE_FILES:
        api.post_sample(path.stem)
    api.dispatch_until(START + timedelta(days=10))

    text = api.client.get("/metrics").text

    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['orchestrator_events_total{result="accepted"}'] == 103
    assert samples['orchestrator_events_total{result="duplicate"}'] == 4
    statuses = api.store.message_statuses()
    assert statuses.get("sent"), "nothing was dispatched"
    for status, count in statuses.items():
        assert samples[f'orchestrator_messages{{status="{status}"}}'] == count
    values = {value for _, value in LABEL.findall(text)}
    private = contact_details() | patient_ids()
    assert not {v for v in values if any(p in v for p in private)}
    assert not [p for p in private if p in text]


# -- timeline, audit, outbox ------------------------------------------------------------------


def test_timeline_lists_a_patients_episodes_messages_and_audit(api: Api) -> None:
    api.post_sample("cardiology-consult")
    api.dispatch_until(START + timedelta(days=30))

    response = api.client.get("/patients/p-cc-001/timeline")

    assert response.status_code == 200
    timeline = response.json()
    assert timeline["patient_id"] == "p-cc-001"
    episodes = {e["id"]: e for e in timeline["episodes"]}
    assert episodes and {e["flow"] for e in episodes.values()} == {"cardiology-consult"}
    assert timeline["messages"] and {m["episode"] for m in timeline["messages"]} <= set(episodes)
    assert {m["key"] for m in timeline["messages"]} == {
        m.key for m in api.store.messages(patient_id="p-cc-001")
    }
    assert timeline["audit"] and {a["patient_id"] for a in timeline["audit"]} == {"p-cc-001"}
    assert {"scheduled", "sent"} <= {a["status"] for a in timeline["audit"]}


def test_timeline_lists_messages_in_time_order_not_by_key(api: Api) -> None:
    api.post_sample("knee-replacement")
    api.dispatch_until(START + timedelta(days=60))

    messages = api.client.get("/patients/p-kr-001/timeline").json()["messages"]

    order = [(datetime.fromisoformat(m["due_at"]), m["key"]) for m in messages]
    assert len(order) > 2
    assert order == sorted(order)
    # The store's own order (by creation, then key) is not the time order here.
    assert [m.key for m in api.store.messages(patient_id="p-kr-001")] != [k for _, k in order]


def test_timeline_of_an_unknown_patient_is_404(api: Api) -> None:
    assert api.client.get("/patients/nobody/timeline").status_code == 404


@pytest.fixture
def dispatched(api: Api) -> Api:
    """Two sample streams in, and a month of dispatching."""
    api.post_sample("cardiology-consult")
    api.post_sample("imaging-referral")
    api.dispatch_until(START + timedelta(days=30))
    return api


def test_audit_filters_by_flow(dispatched: Api) -> None:
    everything = dispatched.client.get("/audit").json()
    cardiology = dispatched.client.get("/audit", params={"flow": "cardiology-consult"}).json()

    assert {a["flow"] for a in everything} == {"cardiology-consult", "imaging-referral"}
    assert cardiology == [a for a in everything if a["flow"] == "cardiology-consult"]


def test_audit_filters_by_flow_and_status(dispatched: Api) -> None:
    sent = dispatched.client.get(
        "/audit", params={"flow": "cardiology-consult", "status": "sent"}
    ).json()

    assert sent
    assert {(a["flow"], a["status"]) for a in sent} == {("cardiology-consult", "sent")}


def test_audit_since_keeps_the_later_rows(dispatched: Api) -> None:
    everything = dispatched.client.get("/audit").json()
    since = START + timedelta(days=15)

    later = dispatched.client.get("/audit", params={"since": since.isoformat()}).json()

    assert later == [a for a in everything if datetime.fromisoformat(a["at"]) >= since]
    assert 0 < len(later) < len(everything)


def test_audit_rejects_a_since_without_offset_with_422(dispatched: Api) -> None:
    response = dispatched.client.get("/audit", params={"since": "2026-03-01T00:00:00"})

    assert response.status_code == 422
    assert "since" in response.text and "offset" in response.text


def test_outbox_lists_what_was_sent(api: Api) -> None:
    api.post_sample("cardiology-consult")
    assert api.client.get("/outbox").json() == []

    api.dispatch_until(START + timedelta(days=30))

    outbox = api.client.get("/outbox", params={"limit": 1000}).json()
    sent = {m.key: m for m in api.store.messages() if m.status == "sent"}
    assert sent
    assert sorted(o["key"] for o in outbox) == sorted(sent)
    for entry in outbox:
        assert entry["channel"] == sent[entry["key"]].channel
        assert entry["to"] in contact_details()
        assert entry["body"]
        assert datetime.fromisoformat(entry["sent_at"]) <= api.clock.now()
