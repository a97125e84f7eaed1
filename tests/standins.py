"""Stand-ins for Twilio and SendGrid: HTTP servers on 127.0.0.1 that answer like them.

The official client libraries reach them through the API base settings.
Each records what it received (the parsed request, and the client port, so a
test can see connections being reused). A test scripts answers per
recipient: an error (status and provider code), or a hold, where the request
is recorded and the answer waits until the test releases it (the client's
timeout fires first: the request arrived, its outcome is unknown).

The Twilio stand-in can also keep a sender's queue (`queue_capacity`
segments, drained at `queue_rate` a second of real time, per messaging
service or number): a create that would overflow it is refused as Twilio's
API refuses it (400, code 21611: the sender's queue is full; on a message
already queued the same overflow is error 30001). `GET /_standin/queue`
answers the queue's figures, for a stand-in served from another process.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrator.sms import segments

__all__ = ["QUEUE_FULL", "Received", "StandIn", "sendgrid_standin", "twilio_standin"]

DATA = Path(__file__).resolve().parent / "data"
ACCOUNT_SID = "AC" + "0" * 32
QUEUE_FULL = 21611  # Twilio's API code for a sender whose queue is full
_SAMPLE_MESSAGE = json.loads((DATA / "twilio" / "message_create_response.json").read_text())


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]]
    json: Any
    port: int


@dataclass
class StandIn:
    """A running stand-in: its base URL, what it received, and the answers it is told to give."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # recipient -> (HTTP status, provider error code)
    errors: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    # Seconds every answer waits, as a provider's round trip does (benchmarks only).
    latency: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    created: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # A sender's queue at the provider (Twilio): segments it holds, and how fast it sends them.
    queue_capacity: float | None = None
    queue_rate: float = 1.0
    queues: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_depth: float = 0.0
    max_wait: float = 0.0  # the longest a segment waited in the queue, in seconds
    overflows: int = 0
    segments: float = 0.0  # queued in all

    def enqueue(self, sender: str, cost: float) -> bool:
        """Queue `cost` segments for `sender`; False when they would overflow its queue."""
        if self.queue_capacity is None:
            return True
        with self.lock:
            now = time.monotonic()
            depth, since = self.queues.get(sender, (0.0, now))
            depth = max(0.0, depth - (now - since) * self.queue_rate)
            if depth + cost > self.queue_capacity:
                self.overflows += 1
                self.queues[sender] = (depth, now)
                return False
            depth += cost
            self.segments += cost
            self.queues[sender] = (depth, now)
            self.max_depth = max(self.max_depth, depth)
            self.max_wait = max(self.max_wait, depth / self.queue_rate)
            return True

    def queue_figures(self) -> dict[str, float]:
        with self.lock:
            return {
                "max_depth": self.max_depth,
                "max_wait": self.max_wait,
                "overflows": self.overflows,
                "segments": self.segments,
                "created": len(self.created),
            }

    def sends(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def ports(self) -> set[int]:
        return {r.port for r in self.received}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the providers' servers do
    # Headers and body in one segment, sent at once: a split answer on a kept-alive
    # connection would wait on the client's delayed ACK (Nagle), 40 ms per request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    standin: StandIn
    kind: str

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read `received`

    def _record(self) -> Received:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        content_type = self.headers.get("content-type", "")
        form = parse_qs(raw.decode(), keep_blank_values=True) if "form" in content_type else {}
        body = json.loads(raw) if "json" in content_type and raw else None
        received = Received(
            self.command,
            split.path,
            parse_qs(split.query),
            {k.lower(): v for k, v in self.headers.items()},
            form,
            body,
            self.client_address[1],
        )
        with self.standin.lock:
            self.standin.received.append(received)
        return received

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a held answer): as a provider would see it

    def do_GET(self) -> None:
        if self.path == "/_standin/queue":
            self._answer(200, self.standin.queue_figures())
            return
        received = self._record()
        to = received.query.get("To", [None])[0]
        with self.standin.lock:
            found = [m for m in reversed(self.standin.created) if to is None or m["to"] == to]
        self._answer(
            200,
            {
                "messages": found[:50],
                "end": max(len(found) - 1, 0),
                "first_page_uri": received.path,
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": received.path,
            },
        )

    def do_POST(self) -> None:
        received = self._record()
        if self.standin.latency:
            threading.Event().wait(self.standin.latency)
        if self.kind == "twilio":
            to = received.form.get("To", [""])[0]
        else:
            to = received.json["personalizations"][0]["to"][0]["email"]
        error = self.standin.errors.get(to)
        if error is not None:
            status, code = error
            self._answer(status, _error_body(self.kind, status, code))
            return
        if self.kind == "twilio":
            sender = (received.form.get("MessagingServiceSid") or received.form.get("From"))[0]  # type: ignore[index]
            if not self.standin.enqueue(sender, segments(received.form["Body"][0])):
                self._answer(400, _error_body(self.kind, 400, QUEUE_FULL))
                return
        number = next(self.standin.ids)
        if self.kind == "twilio":
            message = _twilio_message(number, received)
            with self.standin.lock:
                self.standin.created.append(message)
            if to in self.standin.held:
                self.standin.release.wait(30)
            self._answer(201, message)
        else:
            if to in self.standin.held:
                self.standin.release.wait(30)
            self._answer(202, None, {"X-Message-Id": f"SGMSG{number:08d}"})


def _twilio_message(number: int, received: Received) -> dict[str, Any]:
    """A Message resource shaped like the published create response, for this request."""
    sample = dict(_SAMPLE_MESSAGE)
    form = received.form
    sid = f"SM{number:032x}"
    sample.update(
        sid=sid,
        account_sid=ACCOUNT_SID,
        to=form["To"][0],
        body=form["Body"][0],
        status="queued",
        date_created=format_datetime(datetime.now(UTC)),
        messaging_service_sid=form.get("MessagingServiceSid", [None])[0],
        uri=f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    )
    return sample


def _error_body(kind: str, status: int, code: int | None) -> dict[str, Any]:
    if kind == "twilio":
        return {
            "code": code,
            "message": f"stand-in error {code}",
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    return {"errors": [{"message": f"stand-in error {status}", "field": None, "help": None}]}


class _Server(ThreadingHTTPServer):
    # A provider takes many connections at once; the default backlog of 5 resets them.
    request_queue_size = 128


@contextmanager
def _serve(kind: str) -> Iterator[StandIn]:
    standin = StandIn()
    handler = type("Handler", (_Handler,), {"standin": standin, "kind": kind})
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield standin
    finally:
        standin.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def twilio_standin() -> Iterator[StandIn]:
    with _serve("twilio") as standin:
        yield standin


@contextmanager
def sendgrid_standin() -> Iterator[StandIn]:
    with _serve("sendgrid") as standin:
        yield standin
