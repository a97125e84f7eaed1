"""HL7 v2 inbound throughput: parse and map on one core, and acknowledged over MLLP.

1. parse+map: messages/s through `connectors.hl7v2.to_event` (decode,
   split, map, validate as a canonical event), on one thread; beside it the
   `hl7` package's own `hl7.parse` of the same messages (parse only, no
   mapping), for the ratio;
2. MLLP: messages/s acknowledged by the listener of a real embedded service
   (SQLite in a temporary directory, the shipped flows) over loopback, each
   message's AA read before it counts:
   - `1 client`: one connection, send and wait for the ACK (an interface
     engine's usual mode);
   - `N clients`: N connections doing the same at once (batched together);
   - `pipelined`: one connection with a window of messages in flight.

Messages are the five samples of tests/data/hl7v2 with fresh control ids,
patient ids, phone numbers and appointment or visit ids, so no two are the
same event and contact parsing is not served from a cache. SIU messages'
service code maps to `cardiology.consult`, so bookings start journeys.

The machine has 2 cores shared with other work: figures are noisy; each is
the median of --runs runs.

    python bench/hl7.py [--runs 3] [--messages 20000] [--mllp-messages 2000] [--clients 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the `hl7` package it measures: take its own folder
# off the import path so that `import hl7` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import hl7

from connectors.hl7v2 import Hl7Config, to_event
from connectors.mllp import MllpDecoder, frame
from orchestrator.clock import VirtualClock
from orchestrator.service import EmbeddedService
from orchestrator.service.inbound import build_mllp_server
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "hl7v2"
SERVICES = {"76164006": "cardiology.consult"}


def messages(count: int, salt: str = "") -> list[bytes]:
    """`count` distinct messages made from the samples (CR segment ends)."""
    samples = [p.read_text().replace("\n", "\r") for p in sorted(DATA.glob("*.hl7"))]
    out = []
    for i in range(count):
        text = samples[i % len(samples)]
        lines = text.split("\r")
        for j, line in enumerate(lines):
            fields = line.split("|")
            if fields[0] == "MSH":
                fields[9] = f"C{salt}{i}"
            elif fields[0] == "PID":
                fields[3] = f"P{salt}{i}^^^HOSP^MR"
                fields[13] = f"^PRN^CP^^1^555^555{i % 10000:04d}"
            elif fields[0] == "SCH":
                fields[2] = f"A{salt}{i}"
            elif fields[0] == "PV1" and len(fields) > 19:
                fields[19] = f"V{salt}{i}"
            lines[j] = "|".join(fields)
        out.append("\r".join(lines).encode())
    return out


def rate(count: int, run: Callable[[], object]) -> tuple[float, float]:
    """Messages/s by the wall clock, and by this process's CPU time (the one-core figure
    when other work shares the cores)."""
    start, cpu = time.perf_counter(), time.process_time()
    run()
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


# -- parse and map ------------------------------------------------------------------


def parse_and_map(batch: list[bytes]) -> None:
    config = Hl7Config(services=SERVICES)
    for raw in batch:
        to_event(raw, config)


def package_parse(batch: list[bytes]) -> None:
    for raw in batch:
        hl7.parse(raw.decode())


# -- MLLP ---------------------------------------------------------------------------


class Listener:
    def __init__(self, directory: Path) -> None:
        self.service = EmbeddedService.build(
            Settings(
                db=f"sqlite:///{directory / 'store.db'}",
                flows=ROOT / "flows",
                templates=ROOT / "templates",
                inbound_services=SERVICES,
            ),
            clock=VirtualClock(datetime(2021, 9, 14, tzinfo=UTC)),
        )
        self.server = build_mllp_server(self.service)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(
            self.server.start("127.0.0.1", 0), self.loop
        ).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        self.service.store.engine.dispose()


def client(port: int, batch: list[bytes], window: int) -> None:
    """Send `batch`, at most `window` unanswered at a time; check every ACK is AA."""
    decoder = MllpDecoder()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sent = answered = 0
        while answered < len(batch):
            while sent < len(batch) and sent - answered < window:
                sock.sendall(frame(batch[sent]))
                sent += 1
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the listener closed the connection")
            for ack in decoder.feed(data):
                if b"MSA|AA|" not in ack.body:
                    raise RuntimeError(f"not acknowledged AA: {ack.body[:200]!r}")
                answered += 1


def mllp_run(total: int, clients: int, window: int, salt: str) -> float:
    with tempfile.TemporaryDirectory() as directory:
        listener = Listener(Path(directory))
        try:
            batch = messages(total, salt)
            share = [batch[i::clients] for i in range(clients)]
            threads = [
                threading.Thread(target=client, args=(listener.port, part, window))
                for part in share
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return total / (time.perf_counter() - start)
        finally:
            listener.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--mllp-messages", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--window", type=int, default=50)
    args = parser.parse_args()

    batch = messages(args.messages)
    small = batch[: max(1, len(batch) // 20)]  # hl7.parse is slow: a twentieth will do
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(rate(len(batch), lambda: parse_and_map(batch)))
        theirs.append(rate(len(small), lambda: package_parse(small)))
    print(f"HL7 v2 parse and map, one thread (median of {args.runs}; noisy, shared 2 cores)")
    print(f"  {'':<34}{'wall':>10} {'CPU time':>10}  messages/s")
    for label, rates in (
        ("to_event (parse + map + check)", ours),
        ("hl7.parse (parse only)", theirs),
    ):
        wall = statistics.median(r[0] for r in rates)
        cpu = statistics.median(r[1] for r in rates)
        print(f"  {label:<34}{wall:>10,.0f} {cpu:>10,.0f}")
    ratio = statistics.median(a[1] / b[1] for a, b in zip(ours, theirs, strict=True))
    print(f"  {'ratio (CPU time)':<34}{ratio:>21.1f}x")

    modes = [
        ("1 client, send and wait", 1, 1),
        (f"{args.clients} clients, send and wait", args.clients, 1),
        (f"1 client, pipelined (window {args.window})", 1, args.window),
    ]
    print(f"MLLP acknowledged AA over loopback, SQLite (median of {args.runs})")
    for label, clients, window in modes:
        rates = [
            mllp_run(args.mllp_messages, clients, window, f"{label[:1]}{clients}{window}r{run}")
            for run in range(args.runs)
        ]
        print(f"  {label:<34}{statistics.median(rates):>10,.0f} messages/s")


if __name__ == "__main__":
    main()
