"""MLLP: the framing on its own, then the listener over a real loopback socket."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors import hl7_intake, hl7v2
from connectors.hl7_ack import Envelope, build_ack, envelope_of
from connectors.hl7_intake import Reply
from connectors.hl7_message import APPLICATION_ERROR, Hl7Error, Hl7Message, Location
from connectors.hl7v2 import Hl7Config
from connectors.mllp import BrokenFrame, Frame, MllpDecoder, MllpServer, frame
from orchestrator.clock import VirtualClock
from orchestrator.event import Event
from orchestrator.logs import JSONFormatter
from orchestrator.service import EmbeddedService
from orchestrator.service.inbound import build_hl7_intake, build_mllp_server
from orchestrator.settings import Settings
from orchestrator.store import InboundArchive
from tests import store_reads
from tests.conftest import ROOT
from tests.connectors.hl7_samples import sample, with_field, with_segments
from tests.inbound_service import build_service
from tests.live import wait_until

SIU = sample("SIU-S12-01.hl7").replace(b"\n", b"\r")


# -- framing ------------------------------------------------------------------------


def test_two_frames_in_one_read_give_two_messages() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(frame(b"one") + frame(b"two")) == [Frame(b"one"), Frame(b"two")]


def test_a_frame_over_many_reads_comes_out_once_whole() -> None:
    decoder = MllpDecoder()
    data = frame(b"MSH|a\rPID|b")
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [Frame(b"MSH|a\rPID|b")]


def test_noise_between_frames_and_a_lone_fs_end_are_tolerated() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\r\n" + b"\x0bone\x1c" + b"\x0btwo\x1c\r") == [
        Frame(b"one"),
        Frame(b"two"),
    ]


def test_a_new_start_block_breaks_the_unfinished_frame() -> None:
    decoder = MllpDecoder()
    out = decoder.feed(b"\x0bhalf a mess" + frame(b"whole"))
    assert out == [
        BrokenFrame(b"half a mess", "a new start block before the end of the frame"),
        Frame(b"whole"),
    ]


def test_an_oversized_frame_is_broken_and_the_next_one_still_read() -> None:
    decoder = MllpDecoder(max_frame=10)
    out = decoder.feed(frame(b"x" * 50) + frame(b"small"))
    assert [type(o) for o in out] == [BrokenFrame, Frame]
    assert out[1] == Frame(b"small")


def test_an_oversized_frame_cut_by_a_new_start_block_is_reported_once() -> None:
    decoder = MllpDecoder(max_frame=10)
    out = decoder.feed(b"\x0b" + b"x" * 50 + frame(b"small"))
    assert [type(o) for o in out] == [BrokenFrame, Frame]
    assert out[0].reason == "a frame over 10 bytes"


def test_an_ack_text_is_cut_at_80_characters_between_whole_escapes() -> None:
    error = Hl7Error(Location("PID", 1, 5), "|" * 60, APPLICATION_ERROR)

    ack = build_ack(Envelope(control_id="c-1"), "AE", datetime(2026, 3, 2, tzinfo=UTC), error)

    msa = next(line for line in ack.split("\r") if line.startswith("MSA"))
    text = msa.split("|")[3]
    assert len(text) <= 80
    assert text.endswith("\\F\\")  # a whole escape, not a cut one
    assert text.count("\\") % 2 == 0


def test_pending_is_the_unfinished_frame() -> None:
    decoder = MllpDecoder()
    decoder.feed(b"\x0bMSH|cut")
    assert decoder.pending == b"MSH|cut"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 7))
def test_any_split_of_a_stream_gives_the_same_frames(bodies: list[bytes], step: int) -> None:
    clean = [b.replace(b"\x0b", b"").replace(b"\x1c", b"") for b in bodies]
    stream = b"".join(frame(b) for b in clean)
    decoder = MllpDecoder()
    out = []
    for i in range(0, len(stream), step):
        out += decoder.feed(stream[i : i + step])
    assert out == [Frame(b) for b in clean]


# -- the listener -----------------------------------------------------------------------


class Listener:
    """The MLLP listener of a real embedded service, on its own event loop thread."""

    def __init__(self, service: EmbeddedService) -> None:
        self.service = service
        self.server: MllpServer = build_mllp_server(service)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(
            self.server.start("127.0.0.1", 0), self.loop
        ).result(10)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def read_acks(sock: socket.socket, count: int) -> list[str]:
    """`count` MLLP-framed replies, as text."""
    decoder = MllpDecoder()
    frames: list[Frame | BrokenFrame] = []
    while len(frames) < count:
        data = sock.recv(65536)
        assert data, "the listener closed the connection"
        frames += decoder.feed(data)
    return [f.body.decode() for f in frames]


def segment(ack: str, name: str) -> list[str]:
    for line in ack.split("\r"):
        if line.startswith(name + "|"):
            return line.split("|")
    raise AssertionError(f"no {name} in {ack!r}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[EmbeddedService]:
    built = build_service(
        Settings(
            db=f"sqlite:///{tmp_path / 'store.db'}",
            flows=ROOT / "flows",
            templates=ROOT / "templates",
            inbound_services={"76164006": "cardiology.consult"},
            mllp_idle_timeout=2.0,
        ),
        VirtualClock(datetime(2021, 9, 14, 9, 0, tzinfo=UTC)),
    )
    yield built
    built.store.engine.dispose()


@pytest.fixture
def listener(service: EmbeddedService) -> Iterator[Listener]:
    running = Listener(service)
    yield running
    running.stop()


def test_a_message_is_stored_then_acknowledged_aa_and_advances_a_journey(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(frame(SIU))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1:3] == ["AA", "MSG00012"]
    msh = segment(ack, "MSH")
    assert msh[8] == "ACK^S12^ACK"
    # Sender and receiver swap places: we answer as EHRApp to SCHApp at GHHSFacility.
    assert (msh[2], msh[4], msh[5]) == (
        "EHRApp^1.Aux^ISO",
        "SCHApp",
        "GHHSFacility^2.16.840.1.122848.1.30^ISO",
    )
    [kept] = InboundArchive(service.store).messages()
    assert (kept["body"], kept["status"], kept["event_id"]) == (
        SIU,
        "accepted",
        "hl7:SCHApp@GHHSFacility:MSG00012:S12",
    )
    episodes = service.store.episodes("PATID1234")
    assert [e.flow for e in episodes] == ["cardiology-consult"]


def test_a_resent_message_is_acknowledged_again_and_changes_nothing(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(frame(SIU))
        read_acks(sock, 1)
        sock.sendall(frame(SIU))
        [again] = read_acks(sock, 1)
    assert segment(again, "MSA")[1] == "AA"
    statuses = [m["status"] for m in InboundArchive(service.store).messages()]
    assert statuses == ["duplicate", "accepted"]


def test_two_messages_in_one_read_get_two_acks_in_order(listener: Listener) -> None:
    second = with_field(SIU, "MSH", 10, "MSG00099")
    with listener.connect() as sock:
        sock.sendall(frame(SIU) + frame(second))
        acks = read_acks(sock, 2)
    assert [segment(a, "MSA")[2] for a in acks] == ["MSG00012", "MSG00099"]
    assert all(segment(a, "MSA")[1] == "AA" for a in acks)


def test_a_message_with_a_bad_field_is_nacked_ae_naming_it_and_kept(
    listener: Listener, service: EmbeddedService
) -> None:
    bad = with_field(SIU, "TQ1", 7, "2021-09-24")
    with listener.connect() as sock:
        sock.sendall(frame(bad))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1:3] == ["AE", "MSG00012"]
    err = segment(ack, "ERR")
    assert err[2] == "TQ1^1^7^1"  # ERR-2: segment, sequence, field, repetition
    assert err[3].startswith("102^Data type error^HL70357")
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == bad
    assert rejected.source == "mllp"
    assert rejected.reason.startswith("TQ1-7: not an HL7 date/time")
    assert InboundArchive(service.store).messages()[0]["status"] == "rejected"


def test_a_booking_with_no_time_at_all_is_nacked_ae_naming_the_missing_start(
    listener: Listener, service: EmbeddedService
) -> None:
    timeless = with_field(with_segments(SIU, drop=("TQ1", "AIS")), "SCH", 11, "")
    with listener.connect() as sock:
        sock.sendall(frame(timeless))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1:3] == ["AE", "MSG00012"]
    assert "TQ1-7, AIS-4 and SCH-11.4" in segment(ack, "ERR")[8]
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == timeless
    assert rejected.reason.startswith("SCH-11.4: no appointment start time")
    assert service.store.episodes("PATID1234") == []


def test_an_unsupported_message_type_is_rejected_ar(listener: Listener) -> None:
    with listener.connect() as sock:
        sock.sendall(frame(with_field(SIU, "MSH", 9, "ORU^R01^ORU_R01")))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1] == "AR"
    assert segment(ack, "ERR")[3].startswith("200^Unsupported message type")


def test_a_broken_frame_is_nacked_kept_and_the_next_message_still_taken(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(b"\x0b" + SIU[:200] + frame(with_field(SIU, "MSH", 10, "MSG00100")))
        acks = read_acks(sock, 2)
    assert [segment(a, "MSA")[1:3] for a in acks] == [["AR", "MSG00012"], ["AA", "MSG00100"]]
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == SIU[:200]
    assert "new start block" in rejected.reason


def test_a_client_that_disconnects_mid_frame_leaves_its_bytes_kept(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(b"\x0b" + SIU[:300])
    rejected = wait_until(
        lambda: store_reads.rejected(service.store), timeout=10, what="the cut frame kept"
    )
    assert rejected[0].body == SIU[:300]
    assert "disconnected mid-frame" in rejected[0].reason


def test_a_silent_client_is_closed_after_the_idle_timeout(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(b"\x0bMSH|^~\\&|partial")
        sock.settimeout(10)
        assert sock.recv(100) == b""  # closed by the listener, not by us
    [rejected] = store_reads.rejected(service.store)
    assert "idle timeout" in rejected.reason


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_stop_the_listener(listener: Listener, noise: bytes) -> None:
    with listener.connect() as sock:
        sock.sendall(noise + b"\x0b" + noise + b"\x1c\r")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # whatever it answers, until it closes
            pass
    with listener.connect() as sock:
        sock.sendall(frame(SIU))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1] == "AA"


def test_no_contact_detail_or_identifier_reaches_the_logs(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = with_field(SIU, "PID", 13, "^PRN^CP^^1^555^5550102~^NET^Internet^ana@example.org")
    bad = with_field(raw, "TQ1", 7, "bogus")
    with listener.connect() as sock:
        sock.sendall(frame(raw) + frame(with_field(bad, "MSH", 10, "MSG2")))
        acks = read_acks(sock, 2)
    assert [segment(a, "MSA")[1] for a in acks] == ["AA", "AE"]
    formatter = JSONFormatter()
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert "hl7.acknowledged" in logged
    for secret in ("5550102", "ana@example.org", "PATID1234", "EVERYMAN", "bogus"):
        assert secret not in logged


def test_a_message_that_cannot_be_kept_is_answered_ae_and_not_processed(
    service: EmbeddedService,
) -> None:
    with service.store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE inbound_messages")
    [reply] = build_hl7_intake(service).handle([SIU])
    assert (reply.code, reply.status) == ("AE", "failed")
    assert segment(reply.ack, "MSA")[1:3] == ["AE", "MSG00012"]
    assert "resend" in segment(reply.ack, "ERR")[7]
    assert service.store.episodes("PATID1234") == []


def test_a_frame_trickled_in_too_slowly_is_cut_at_the_frame_timeout(
    service: EmbeddedService,
) -> None:
    listener = Listener(service)
    listener.server.frame_timeout = 1.0  # the idle timeout (2 s) is never reached
    try:
        with listener.connect() as sock:
            sock.sendall(b"\x0bMSH|^~\\&|")
            sock.settimeout(0.3)
            closed = False
            for _ in range(40):  # one byte every 0.3 s at most, for 12 s at most
                try:
                    sock.sendall(b"x")
                    closed = sock.recv(100) == b""
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed = True
                if closed:
                    break
        assert closed
        [rejected] = store_reads.rejected(service.store)
        assert "a frame took longer than 1 s" in rejected.reason
        assert rejected.body.startswith(b"MSH|^~\\&|x")
    finally:
        listener.stop()


def test_pipelined_frames_whose_reads_all_end_mid_frame_are_each_timed_alone(
    service: EmbeddedService,
) -> None:
    listener = Listener(service)
    listener.server.frame_timeout = 0.5
    frames = [frame(with_field(SIU, "MSH", 10, f"PIPE{k}")) for k in range(5)]
    # Each send ends a frame and begins the next: the listener is never between frames.
    chunks = [frames[0] + frames[1][:50]]
    chunks += [frames[k][50:] + frames[k + 1][:50] for k in range(1, 4)]
    chunks.append(frames[4][50:])
    try:
        with listener.connect() as sock:
            acks: list[str] = []
            for chunk in chunks:
                sock.sendall(chunk)
                acks += read_acks(sock, 1)  # this chunk was read
                time.sleep(0.2)  # 5 sends span 0.8 s: past the timeout, no frame near it
        assert [segment(a, "MSA")[1:3] for a in acks] == [["AA", f"PIPE{k}"] for k in range(5)]
        assert store_reads.rejected(service.store) == []
    finally:
        listener.stop()


# -- one bad message never stops the acknowledgements -------------------------------------

POISON = b"MSH\rPID|1||123"  # an MSH line too short to hold its field separator


@given(st.text(max_size=200))
@example(POISON.decode())
def test_the_envelope_of_any_text_is_read_without_raising(text: str) -> None:
    assert isinstance(envelope_of(text), Envelope)


def test_a_short_msh_line_gives_the_default_envelope() -> None:
    assert envelope_of(POISON.decode()) == Envelope()


def test_an_unreadable_msh_is_rejected_ar_and_the_next_connection_still_acknowledged(
    listener: Listener, service: EmbeddedService
) -> None:
    with listener.connect() as sock:
        sock.sendall(frame(POISON))
        [nack] = read_acks(sock, 1)
    assert segment(nack, "MSA")[1] == "AR"
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == POISON
    with listener.connect() as sock:
        sock.sendall(frame(SIU))
        [ack] = read_acks(sock, 1)
    assert segment(ack, "MSA")[1:3] == ["AA", "MSG00012"]


def test_the_batcher_outlives_an_intake_that_answers_wrongly(service: EmbeddedService) -> None:
    intake = build_hl7_intake(service)
    calls: list[int] = []

    def handle(raws: Sequence[bytes]) -> list[Reply]:
        calls.append(len(raws))
        return [] if len(calls) == 1 else intake.handle(raws)  # first batch: no replies at all

    listener = Listener(service)
    listener.server.handle = handle
    try:
        with listener.connect() as sock:
            sock.sendall(frame(SIU))
            [failed] = read_acks(sock, 1)
        assert segment(failed, "MSA")[1:3] == ["AE", "MSG00012"]
        with listener.connect() as sock:
            sock.sendall(frame(SIU))
            [ack] = read_acks(sock, 1)
        assert segment(ack, "MSA")[1:3] == ["AA", "MSG00012"]
    finally:
        listener.stop()


def test_a_time_out_of_range_fails_only_its_own_message(
    listener: Listener, service: EmbeddedService
) -> None:
    bad = with_field(with_field(SIU, "MSH", 7, "99991231235959-0500"), "MSH", 10, "MSGBAD")
    with listener.connect() as sock:
        sock.sendall(frame(bad) + frame(SIU))  # one read: one batch
        acks = read_acks(sock, 2)
    assert [segment(a, "MSA")[1:3] for a in acks] == [["AE", "MSGBAD"], ["AA", "MSG00012"]]
    assert segment(acks[0], "ERR")[3].startswith("102^Data type error")
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == bad
    assert service.store.episodes("PATID1234") != []


def test_an_unexpected_mapping_failure_fails_only_its_own_message(
    service: EmbeddedService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = hl7v2.map_message

    def mapping(message: Hl7Message, config: Hl7Config) -> Event:
        if message.msh.get(10) == "MSGBAD":
            raise OverflowError("PATID1234")
        return real(message, config)

    monkeypatch.setattr(hl7_intake, "map_message", mapping)
    bad = with_field(SIU, "MSH", 10, "MSGBAD")
    replies = build_hl7_intake(service).handle([bad, SIU])
    assert [(r.code, r.status) for r in replies] == [("AE", "rejected"), ("AA", "accepted")]
    assert segment(replies[0].ack, "MSA")[1:3] == ["AE", "MSGBAD"]
    [rejected] = store_reads.rejected(service.store)
    assert rejected.body == bad
    logged = "\n".join(JSONFormatter().format(r) for r in caplog.records)
    assert "OverflowError" in logged
    assert "PATID1234" not in logged
