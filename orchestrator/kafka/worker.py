"""The Kafka runtime's composition root: a Faust worker beside a dispatch loop.

`run_worker` builds the same `Runtime` as the embedded service (one store,
flow registry, processor, intake and dispatcher), starts its dispatch loop on a
thread (every worker claims due messages under PostgreSQL `SKIP LOCKED`
leases, so a second worker adds dispatch capacity and takes over a dead one's
claims when their leases run out) and runs the Faust worker until it is
stopped (SIGTERM, SIGINT). With ORCHESTRATOR_DISPATCH=off it starts no loop:
it only consumes, and `orchestrator dispatch` processes send.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time

from ..clock import Clock, SystemClock
from ..errors import StoreError
from ..gc_tuning import tune_for_throughput
from ..service.runtime import Runtime
from ..settings import Settings
from .app import AgentOptions, build_app
from .handler import BatchHandler

__all__ = ["agent_options", "build_handler", "run_worker"]

log = logging.getLogger(__name__)


def agent_options(settings: Settings, broker: str, datadir: str) -> AgentOptions:
    return AgentOptions(
        broker=broker,
        group=settings.kafka_group,
        partitions=settings.kafka_partitions,
        batch=settings.kafka_batch,
        batch_seconds=settings.kafka_batch_seconds,
        session_timeout=settings.kafka_session_timeout_seconds,
        commit_interval=settings.kafka_commit_seconds,
        datadir=datadir,
    )


def build_handler(runtime: Runtime) -> BatchHandler:
    """The batch handler over the runtime's intake (its input kept as from `kafka`)."""
    return BatchHandler(runtime.intake, default_region=runtime.settings.default_region)


def _build(settings: Settings, clock: Clock, owner: str, attempts: int = 5) -> Runtime:
    """The service; retried when workers starting together race to record the flow versions.

    Each records the versions it finds missing; the loser of that race gets an
    integrity error, and on the next attempt finds the rows (and checks their digests).
    """
    for attempt in range(1, attempts + 1):
        try:
            return Runtime.build(
                settings, clock=clock, migrate=settings.db.startswith("sqlite"), owner=owner
            )
        except StoreError as exc:
            if attempt == attempts:
                raise
            log.warning(
                "worker.build_retry", extra={"attempt": attempt, "error": exc.__class__.__name__}
            )
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def run_worker(settings: Settings, broker: str, *, clock: Clock | None = None) -> int:
    """Run one worker until it is stopped; returns its exit status (0 after SIGTERM).

    A crash (the agent failed) gives a non-zero status.

    Raises:
        FlowError: the flows or templates are invalid.
        StoreError: the store is unreachable or its schema is behind.
    """
    import faust

    owner = f"worker:{socket.gethostname()}:{os.getpid()}"
    runtime = _build(settings, clock or SystemClock(), owner)
    datadir = tempfile.mkdtemp(prefix="orchestrator-worker-")
    app = build_app(build_handler(runtime), agent_options(settings, broker, datadir))
    tune_for_throughput()
    runtime.start()
    log.info("worker.started", extra={"owner": owner, "dispatch": settings.dispatch})
    status = 0
    try:
        worker = faust.Worker(app, loglevel="INFO", override_logging=False, quiet=True)
        worker.execute_from_commandline()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        runtime.close()
        shutil.rmtree(datadir, ignore_errors=True)
        log.info("worker.stopped", extra={"owner": owner, "status": status})
    return status
