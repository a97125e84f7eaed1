"""Real-channel throughput: messages/s to the Twilio and SendGrid stand-ins.

Two measurements, each the median of --runs runs, sequential (concurrency 1)
and threaded (--concurrency, the dispatcher's setting) side by side:

1. connector: --messages sends through `TwilioConnector` and
   `SendGridConnector` (the official libraries over HTTP to the stand-in
   servers of tests/standins.py on 127.0.0.1), from a thread pool as large as
   the concurrency, as the dispatcher's threaded batches send them; once with
   instant answers (the client's own speed) and once with every answer
   delayed --latency-ms, as a provider's round trip delays it;
2. dispatcher: the embedded composition (EmbeddedService.build with Twilio
   and SendGrid settings pointing at the stand-ins, a SQLite store) with
   --patients patients referred for a cardiology consult, SMS-only or
   email-only; the clock moves to when their first message is due and
   `Dispatcher.tick()` runs until nothing is due: policies, rendering, the
   store's writes and the HTTP send per message (answers delayed --latency-ms).

3. pacing: --pacing-messages patients referred at one instant make as many
   SMS due at once; the embedded service's own dispatch loop sends them
   through the Twilio stand-in, whose sender queue holds --queue-seconds of
   the sender's rate (--sms-rate segments a second, drained in real time)
   and refuses a send that would overflow it (21611: a full queue). The same
   messages twice, one run each, side by side: paced at --sms-rate (the
   messaging service's rate in ORCHESTRATOR_SENDER_RATES, burst a second of
   it), and not paced (a messaging service with no rate set). Keep the rate
   well below what the dispatcher sends unpaced, or the figures show the
   dispatcher's speed, not the pacing. Figures: configured and achieved
   rate, the deepest the provider queue got and the longest a segment
   waited in it, provider errors, and messages past their staleness limit.
   The clock runs in real time from the instant the messages fall due.

The stand-ins run in a child process each (Python threading HTTP servers),
so they do not share this process's GIL, but they do share the two cores
with it: the figures are a floor for the client's own speed. The machine is
shared by several agents; figures are noisy.

    python bench/channels.py [--runs 3] [--messages 1000] [--patients 600]
        [--concurrency 16] [--latency-ms 20] [--pacing-messages 3000]
        [--sms-rate 30] [--queue-seconds 4] [--only-pacing]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests/standins.py

from connectors.sendgrid import SendGridConfig, SendGridConnector  # noqa: E402
from connectors.twilio import TwilioConfig, TwilioConnector  # noqa: E402
from orchestrator.clock import SystemClock, VirtualClock  # noqa: E402
from orchestrator.event import Channel  # noqa: E402
from orchestrator.event_schema import parse_event  # noqa: E402
from orchestrator.runtime import Outgoing  # noqa: E402
from orchestrator.service import EmbeddedService  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from tests.standins import ACCOUNT_SID, StandIn, sendgrid_standin, twilio_standin  # noqa: E402

REFERRED_AT = datetime(2026, 3, 2, 15, 10, tzinfo=UTC)  # 09:10 in Chicago
DUE_AT = REFERRED_AT + timedelta(minutes=15)  # the first message: stage.entered + 10m


@contextmanager
def standin_process(
    kind: str, latency: float, queue: tuple[float, float] | None = None
) -> Iterator[StandIn]:
    """A stand-in served from a child process; only its URL is known here.

    `queue`: (capacity, rate) of each sender's queue at the provider (Twilio).
    """
    urls: multiprocessing.Queue[str] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=_serve_child, args=(kind, latency, urls, stop, queue))
    child.start()
    try:
        yield StandIn(url=urls.get(timeout=30))
    finally:
        stop.set()
        child.join(30)


def _serve_child(
    kind: str, latency: float, urls: Any, stop: Any, queue: tuple[float, float] | None
) -> None:
    serve = twilio_standin if kind == "twilio" else sendgrid_standin
    with serve() as standin:
        standin.latency = latency
        if queue is not None:
            standin.queue_capacity, standin.queue_rate = queue
        urls.put(standin.url)
        stop.wait()


def send_all(connector: Any, outgoing: list[Outgoing], concurrency: int) -> float:
    """Messages/s sending `outgoing` from `concurrency` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(connector.send, outgoing))
    return len(outgoing) / (time.perf_counter() - started)


def connector_run(kind: str, standin: StandIn, messages: int, concurrency: int, run: int) -> float:
    if kind == "sms":
        sms = TwilioConnector(
            TwilioConfig(
                account_sid=ACCOUNT_SID,
                auth_token="token",
                messaging_service_sid="MG" + "1" * 32,
                status_callback="https://orchestrator.example.org/webhooks/twilio/status",
                api_base=standin.url,
                pool_size=concurrency,
            ),
            clock=SystemClock(),
        )
        batch = [
            Outgoing(f"k-{run}-{i}", Channel.SMS, f"+1555555{i % 10000:04d}", f"Reminder {i}")
            for i in range(messages)
        ]
        try:
            return send_all(sms, batch, concurrency)
        finally:
            sms.close()
    email = SendGridConnector(
        SendGridConfig(api_key="SG.k", sender="care@example.org", api_base=standin.url)
    )
    batch = [
        Outgoing(
            f"k-{run}-{i}", Channel.EMAIL, f"p{i}@example.org", "Guide", "Subject", "<p>Guide</p>"
        )
        for i in range(messages)
    ]
    return send_all(email, batch, concurrency)


def referral(i: int, channel: str) -> dict[str, Any]:
    contact = {"phone": f"+1555555{i:04d}"} if channel == "sms" else {"email": f"p{i}@example.org"}
    return {
        "id": f"evt-bench-{channel}-{i}",
        "type": "referral.received",
        "occurred_at": REFERRED_AT.isoformat(),
        "source": "bench",
        "patient": {"id": f"p-{channel}-{i}", "language": "en", "timezone": "America/Chicago"}
        | contact,
        "attributes": {"service": "cardiology.consult"},
    }


def dispatcher_run(
    channel: str, twilio: StandIn, sendgrid: StandIn, patients: int, concurrency: int
) -> float:
    with tempfile.TemporaryDirectory() as folder:
        flows = Path(folder) / "flows"
        flows.mkdir()
        (flows / "cardiology-consult.yaml").write_text(
            (ROOT / "flows" / "cardiology-consult.yaml").read_text()
        )
        clock = VirtualClock(REFERRED_AT)
        settings = Settings(
            db=f"sqlite:///{folder}/store.db",
            flows=flows,
            templates=ROOT / "templates",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token="token",
            twilio_messaging_service_sid="MG" + "1" * 32,
            twilio_api_base=twilio.url,
            sendgrid_api_key="SG.k",
            sendgrid_sender="care@example.org",
            sendgrid_api_base=sendgrid.url,
            dispatch_concurrency=concurrency,
        )
        service = EmbeddedService.build(settings, clock=clock)
        try:
            service.processor.process([parse_event(referral(i, channel)) for i in range(patients)])
            clock.move_to(DUE_AT)
            started = time.perf_counter()
            while service.dispatcher.tick():
                pass
            elapsed = time.perf_counter() - started
            sent = service.store.message_statuses().get("sent", 0)
            if sent < patients:
                raise SystemExit(f"only {sent} of {patients} {channel} messages were sent")
            return sent / elapsed
        finally:
            service.dispatcher.connectors[Channel.SMS].close()  # type: ignore[attr-defined]
            service.store.engine.dispose()


class RealTimeClock:
    """Real time from a chosen instant (`move_to` jumps): the stand-in drains in the same seconds."""

    def __init__(self, start: datetime) -> None:
        self.move_to(start)

    def move_to(self, instant: datetime) -> None:
        self.start, self.began = instant, time.perf_counter()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.perf_counter() - self.began)


def pacing_run(twilio: StandIn, patients: int, rate: float | None, concurrency: int) -> str:
    """`patients` SMS due at once through the service's dispatch loop; one line of figures."""
    with tempfile.TemporaryDirectory() as folder:
        flows = Path(folder) / "flows"
        flows.mkdir()
        (flows / "cardiology-consult.yaml").write_text(
            (ROOT / "flows" / "cardiology-consult.yaml").read_text()
        )
        sender = "MG" + "1" * 32
        settings = Settings(
            db=f"sqlite:///{folder}/store.db",
            flows=flows,
            templates=ROOT / "templates",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token="token",
            twilio_messaging_service_sid=sender,
            twilio_api_base=twilio.url,
            dispatch_concurrency=concurrency,
            dispatch_poll_seconds=0.05,
            retry_backoff_seconds=2.0,
            # Not paced: a messaging service with no rate set (the default).
            sender_rates={sender: rate} if rate else {},
        )
        clock = RealTimeClock(REFERRED_AT)
        service = EmbeddedService.build(settings, clock=clock)
        try:
            for start in range(0, patients, 1000):
                batch = range(start, min(patients, start + 1000))
                service.processor.process([parse_event(referral(i, "sms")) for i in batch])
                clock.move_to(REFERRED_AT)
            clock.move_to(DUE_AT)  # every welcome SMS is due now
            assert (service.dispatcher.pacer is not None) == (rate is not None)
            began = time.perf_counter()
            service.start()
            final = 0
            deadline = began + 3 * patients / (rate or 100) + 120
            while time.perf_counter() < deadline:
                time.sleep(0.5)
                counts = service.store.message_statuses()
                final = sum(counts.get(s, 0) for s in ("sent", "expired", "failed", "suppressed"))
                if final >= patients:
                    break
            elapsed = time.perf_counter() - began
            service.stop()
            counts = service.store.message_statuses()
            audit = service.store.audit(status="sent")
            late = [r for r in audit if r.due_at and r.at >= r.due_at + settings.stale_after]
            scheduled = service.store.audit(status="scheduled")
            paced = sum(r.reason == "paced" for r in scheduled)
            with urlopen(f"{twilio.url}/_standin/queue", timeout=10) as answer:
                queue = json.load(answer)
            segments_sent = queue["segments"]
            return (
                f"{'paced' if rate else 'not paced':9} {patients:6} SMS: configured "
                f"{f'{rate:g}/s' if rate else 'none':>6}, achieved {segments_sent / elapsed:6.1f}/s "
                f"({counts.get('sent', 0)} sent in {elapsed:.1f} s), held (paced) {paced}, "
                f"max provider queue {queue['max_depth']:.0f} segments "
                f"(longest wait {queue['max_wait']:.1f} s), provider errors {queue['overflows']}, "
                f"failed {counts.get('failed', 0)}, expired stale {counts.get('expired', 0)}, "
                f"sent past the limit {len(late)}"
            )
        finally:
            service.dispatcher.connectors[Channel.SMS].close()  # type: ignore[attr-defined]
            service.store.engine.dispose()


def median_line(name: str, figures: dict[int, list[float]]) -> str:
    parts = [f"concurrency {c}: {statistics.median(v):7.0f}/s" for c, v in figures.items()]
    one, many = (statistics.median(v) for v in figures.values())
    return f"{name:28} " + "   ".join(parts) + f"   ratio {many / one:.1f}x"


def measure(name: str, levels: list[int], runs: int, once: Callable[[int, int], float]) -> str:
    figures: dict[int, list[float]] = {c: [] for c in levels}
    for run in range(runs):
        for concurrency in levels:  # interleaved, so both share the machine's noise
            figures[concurrency].append(once(concurrency, run))
            print(
                f"  run {run} {name:20} c={concurrency:<3} {figures[concurrency][-1]:7.0f}/s",
                flush=True,
            )
    return median_line(name, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--pacing-messages", type=int, default=3_000)
    parser.add_argument("--sms-rate", type=float, default=30.0)
    parser.add_argument("--queue-seconds", type=float, default=4.0)
    parser.add_argument("--only-pacing", action="store_true")
    args = parser.parse_args()
    levels = [1, args.concurrency]
    lines: list[str] = []
    latency = args.latency_ms / 1000
    queue = (args.sms_rate * args.queue_seconds, args.sms_rate)
    print(
        f"3. pacing: a sender queue of {queue[0]:g} segments drained at {args.sms_rate:g}/s, "
        f"answers {args.latency_ms:g} ms, concurrency {args.concurrency}"
    )
    pacing: list[str] = []
    for rate in (args.sms_rate, None):  # the same messages, paced and not
        with standin_process("twilio", latency, queue) as twilio:
            pacing.append(pacing_run(twilio, args.pacing_messages, rate, args.concurrency))
            print("  " + pacing[-1], flush=True)
    if args.only_pacing:
        return
    for delay, label in ((0.0, "instant"), (latency, f"{args.latency_ms:g} ms")):
        with (
            standin_process("twilio", delay) as twilio,
            standin_process("sendgrid", delay) as sendgrid,
        ):
            print(f"1. connector: {args.messages} sends to the stand-ins, answers {label}")
            for channel, standin in (("sms", twilio), ("email", sendgrid)):
                lines.append(
                    measure(
                        f"connector {channel} {label}",
                        levels,
                        args.runs,
                        lambda c, r, channel=channel, standin=standin: connector_run(  # type: ignore[misc]
                            channel, standin, args.messages, c, r
                        ),
                    )
                )
    print(
        f"2. dispatcher: {args.patients} due messages, SQLite store, answers {args.latency_ms:g} ms"
    )
    with (
        standin_process("twilio", latency) as twilio,
        standin_process("sendgrid", latency) as sendgrid,
    ):
        for channel in ("sms", "email"):
            lines.append(
                measure(
                    f"dispatcher {channel}",
                    levels,
                    args.runs,
                    lambda c, r, channel=channel: dispatcher_run(  # type: ignore[misc]
                        channel, twilio, sendgrid, args.patients, c
                    ),
                )
            )
    print(f"\n== summary: medians of {args.runs} runs (messages/s) ==")
    for line in lines:
        print(line)
    print("== pacing ==")
    for line in pacing:
        print(line)


if __name__ == "__main__":
    main()
