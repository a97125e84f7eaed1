"""Hostile HL7 over a real MLLP listener, on both stores: every frame answered, the rest taken.

Fields get NULs, bytes that are not UTF-8, over-long values and deep
repetition; every frame must get an ACK (AA, AE or AR), each AE or AR keeps
the message in `rejected_inputs`, and a valid message after it is still AA.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mllp import frame
from orchestrator.clock import VirtualClock
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from tests import store_reads
from tests.conftest import ROOT
from tests.connectors.hl7_samples import with_field
from tests.connectors.test_mllp import SIU, Listener, read_acks, segment
from tests.inbound_service import build_service

_hostile_field = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\x00", b"a\x00b", b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\x80", b"~" * 500]),
    st.builds(
        lambda c, n: c * n, st.sampled_from([b"9", b"x", b"^", b"&", b"~"]), st.integers(1, 3000)
    ),
)
_place = st.sampled_from(
    [
        ("PID", 3),
        ("PID", 5),
        ("PID", 13),
        ("PID", 15),
        ("SCH", 2),
        ("SCH", 11),
        ("TQ1", 7),
        ("AIS", 3),
        ("AIL", 3),
        ("MSH", 9),
        ("MSH", 10),
        ("MSH", 7),
    ]
)


def _with_raw_field(raw: bytes, name: str, number: int, value: bytes) -> bytes:
    """`raw` with one field of the first `name` segment replaced by bytes as they are."""
    lines = raw.split(b"\r")
    for i, line in enumerate(lines):
        if line.startswith(name.encode() + b"|"):
            parts = line.split(b"|")
            index = number - 1 if name == "MSH" else number
            parts += [b""] * (index + 1 - len(parts))
            parts[index] = value
            lines[i] = b"|".join(parts)
            break
    return b"\r".join(lines)


@pytest.fixture
def hostile_listener(store_url: str) -> Iterator[tuple[Listener, EmbeddedService]]:
    service = build_service(
        Settings(
            db=store_url,
            flows=ROOT / "flows",
            templates=ROOT / "templates",
            inbound_services={"76164006": "cardiology.consult"},
            # Generous: a loaded machine must not close the client mid-test.
            mllp_idle_timeout=30.0,
        ),
        VirtualClock(datetime(2021, 9, 14, 9, 0, tzinfo=UTC)),
    )
    running = Listener(service)
    yield running, service
    running.stop()
    service.store.engine.dispose()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(st.tuples(_place, _hostile_field), min_size=1, max_size=3), n=st.integers())
def test_hostile_fields_are_answered_kept_and_the_next_message_still_taken(
    hostile_listener: tuple[Listener, EmbeddedService],
    changes: list[tuple[tuple[str, int], bytes]],
    n: int,
) -> None:
    listener, service = hostile_listener
    hostile = SIU
    for (name, number), value in changes:
        # Framing bytes would end the frame early: that is the framing's own test.
        clean = value.replace(b"\r", b"").replace(b"\x1c", b"").replace(b"\x0b", b"")
        hostile = _with_raw_field(hostile, name, number, clean)
    good = with_field(SIU, "MSH", 10, f"GOOD{n % 10**9}")
    before = len(store_reads.rejected(service.store, limit=100_000))

    with listener.connect() as sock:
        sock.sendall(frame(hostile) + frame(good))
        first, second = read_acks(sock, 2)

    code = segment(first, "MSA")[1]
    assert code in ("AA", "AE", "AR"), first
    kept = len(store_reads.rejected(service.store, limit=100_000)) - before
    assert kept == (code != "AA"), (code, kept)
    assert segment(second, "MSA")[1] == "AA", second


@pytest.mark.parametrize("value", [b"\x00", b"a\x00b", b"\xed\xa0\x80", b"S" * 5000])
def test_a_message_type_the_store_cannot_quote_is_answered_kept_and_its_neighbour_taken(
    hostile_listener: tuple[Listener, EmbeddedService], value: bytes
) -> None:
    # Its refusal quotes the message type: on PostgreSQL a NUL in that reason
    # failed the archive's settle, and with it every message of the batch.
    listener, service = hostile_listener
    before = len(store_reads.rejected(service.store, limit=100_000))

    with listener.connect() as sock:
        sock.sendall(frame(_with_raw_field(SIU, "MSH", 9, value)) + frame(SIU))
        first, second = read_acks(sock, 2)

    assert segment(first, "MSA")[1] in ("AE", "AR"), first
    assert len(store_reads.rejected(service.store, limit=100_000)) - before == 1
    assert segment(second, "MSA")[1] == "AA", second
