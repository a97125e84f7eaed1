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

The stand-ins run in a child process each (Python threading HTTP servers),
so they do not share this process's GIL, but they do share the two cores
with it: the figures are a floor for the client's own speed. The machine is
shared by several agents; figures are noisy.

    python bench/channels.py [--runs 3] [--messages 1000] [--patients 600]
        [--concurrency 16] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
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
def standin_process(kind: str, latency: float) -> Iterator[StandIn]:
    """A stand-in served from a child process; only its URL is known here."""
    urls: multiprocessing.Queue[str] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=_serve_child, args=(kind, latency, urls, stop))
    child.start()
    try:
        yield StandIn(url=urls.get(timeout=30))
    finally:
        stop.set()
        child.join(30)


def _serve_child(kind: str, latency: float, urls: Any, stop: Any) -> None:
    serve = twilio_standin if kind == "twilio" else sendgrid_standin
    with serve() as standin:
        standin.latency = latency
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
    args = parser.parse_args()
    levels = [1, args.concurrency]
    lines: list[str] = []
    latency = args.latency_ms / 1000
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


if __name__ == "__main__":
    main()
