"""Topic routing, broker URLs, ingest routing and dead-letter bodies (no broker needed)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from kafka.errors import KafkaTimeoutError

from orchestrator.event import EventType
from orchestrator.kafka import DeadLetter, Record, bootstrap_servers, topic_for
from orchestrator.kafka.publish import Publisher, route
from orchestrator.kafka.topics import EVENT_TOPICS, BrokerError
from tests.builders import make_event_data


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("appointment.booked", "patient.scheduling"),
        ("appointment.no_show", "patient.scheduling"),
        ("referral.received", "patient.scheduling"),
        ("patient.updated", "patient.scheduling"),
        ("intake.documents_missing", "patient.intake"),
        ("patient.admitted", "patient.discharge"),
        ("patient.discharged", "patient.discharge"),
        ("message.replied", "patient.messaging"),
        ("consent.opted_out", "patient.messaging"),
    ],
)
def test_event_type_picks_its_topic(event_type: str, topic: str) -> None:
    assert topic_for(event_type) == topic


def test_every_event_type_has_a_topic() -> None:
    assert {topic_for(t.value) for t in EventType} == set(EVENT_TOPICS)


def test_unknown_type_has_no_topic() -> None:
    assert topic_for("appointment") is None
    assert topic_for("patient.teleported") is None


def test_broker_url_becomes_bootstrap_servers() -> None:
    assert bootstrap_servers("kafka://127.0.0.1:9092") == ["127.0.0.1:9092"]
    assert bootstrap_servers("kafka://a:1;b:2") == ["a:1", "b:2"]


@pytest.mark.parametrize("url", ["127.0.0.1:9092", "http://h:1", "kafka://host", "kafka://"])
def test_malformed_broker_url_is_refused(url: str) -> None:
    with pytest.raises(BrokerError, match="expected kafka://HOST:PORT"):
        bootstrap_servers(url)


def test_route_keys_by_patient_id() -> None:
    line = json.dumps({"type": "intake.sent", "patient": {"id": "p-7"}})
    assert route(line) == ("patient.intake", b"p-7")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"type": "x.y", "patient": {"id": "p"}}', "no topic for event type 'x.y'"),
        ('{"type": "intake.sent", "patient": {}}', "patient.id: required"),
    ],
)
def test_unroutable_line_says_why(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        route(line)


def test_dead_letter_carries_reason_and_source() -> None:
    letter = DeadLetter(Record("patient.intake", 3, 41, b"p-1", b"{oops"), "not JSON")
    body = json.loads(letter.value())
    assert body == {
        "reason": "not JSON",
        "topic": "patient.intake",
        "partition": 3,
        "offset": 41,
        "encoding": "utf-8",
        "value": "{oops",
    }
    assert dict(letter.headers())["source-offset"] == b"41"


@pytest.mark.parametrize(
    "raw",
    ["д".encode() * 400_000, bytes(range(256)) * 4_000, b"\x01" * 900_000],
    ids=["cyrillic", "binary", "control characters"],
)
def test_a_large_input_is_cut_so_that_its_dead_letter_fits_a_kafka_message(raw: bytes) -> None:
    letter = DeadLetter(Record("patient.intake", 2, 7, b"p-1", raw), "not JSON")

    value = letter.value()

    # Faust's producer refuses messages over 1,000,000 bytes (max_request_size).
    assert len(value) < 1_000_000
    body = json.loads(value)
    assert (body["truncated"], body["length"]) == (True, len(raw))
    assert body["sha256"] == hashlib.sha256(raw).hexdigest()
    kept = (
        body["value"].encode() if body["encoding"] == "utf-8" else base64.b64decode(body["value"])
    )
    assert raw.startswith(kept) and len(kept) > 0


def test_dead_letter_keeps_binary_input_as_base64() -> None:
    letter = DeadLetter(Record("patient.intake", 0, 0, None, b"\xff\xfe"), "not JSON")
    body = json.loads(letter.value())
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["value"]) == b"\xff\xfe"


class _RefusingProducer:
    """A producer whose buffer is full: send() times out, as kafka-python's does."""

    def send(self, *args: object, **kwargs: object) -> None:
        raise KafkaTimeoutError("Failed to allocate memory within the configured max blocking time")

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_a_record_the_producer_cannot_take_is_a_broker_error() -> None:
    publisher = Publisher("kafka://127.0.0.1:9", producer=_RefusingProducer())
    line = json.dumps(make_event_data()).encode()

    with pytest.raises(BrokerError, match="KafkaTimeoutError"):
        publisher.publish([(1, line)])
