"""Fixtures for the Kafka runtime: a broker, a PostgreSQL store, workers as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orchestrator.store import SqlStore, connect
from tests import store_reads
from tests.kafka_broker import Broker, running_broker
from tests.samples import ROOT

SCRIPT = Path(sys.executable).parent / "orchestrator"
# Short enough that a group forms in a couple of seconds on Tansu and a killed
# worker's partitions move to the survivor soon after.
SESSION_TIMEOUT = "3"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """The run's PostgreSQL database, emptied after the test."""
    yield pg_database
    engine = connect(pg_database)
    store_reads.purge(SqlStore(engine))
    engine.dispose()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = connect(pg_url)
    yield engine
    engine.dispose()


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


StartWorker = Callable[..., Worker]


@pytest.fixture
def start_worker(tmp_path: Path, broker: Broker, pg_url: str) -> Iterator[StartWorker]:
    """Starts `orchestrator worker` processes on the broker and store; stops them afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*, partitions: int = 4, **env: str) -> Worker:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        environment = {
            **os.environ,
            "ORCHESTRATOR_KAFKA_SESSION_TIMEOUT_SECONDS": SESSION_TIMEOUT,
            "ORCHESTRATOR_KAFKA_COMMIT_SECONDS": "0.5",
            "ORCHESTRATOR_DISPATCH_POLL_SECONDS": "0.05",
            "ORCHESTRATOR_LEASE_SECONDS": "1",
            **env,
        }
        command = [
            str(SCRIPT),
            "worker",
            "--broker",
            broker.url,
            "--db",
            pg_url,
            "--flows",
            str(ROOT / "flows"),
            "--templates",
            str(ROOT / "templates"),
            "--partitions",
            str(partitions),
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, env=environment, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT
            )
        started.append(process)
        return Worker(process, log)

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
