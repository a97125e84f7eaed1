"""The composition root of both runtimes: one `Runtime`, built once from settings.

`Runtime.build` turns settings into the store, the flow registry, the event
processor, the intake every transport hands its input to (and the queue a
connector's send thread hands opt-outs to, kept in the store's inbound
archive), the connectors and the dispatcher. `start()` runs the dispatch
loop on a thread, whose first tick takes what a previous process left
queued; each tick first asks the store for each flow's newest version (one
small query) and takes up a version published since, in this process or
another (`use_flows`); `stop()` lets the message in hand finish before it returns. How the loop idles is its one
seam: on a virtual clock the parity test drives this very loop. The embedded service (HTTP and
MLLP, `orchestrator run`) and the Kafka worker (`orchestrator worker`) are
transports over one of these.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clock import Clock, SystemClock
from ..errors import StoreError
from ..event import Channel
from ..flows import load_flows
from ..ports import Connector, EventIntake, Outbox
from ..runtime.channels import real_connectors
from ..runtime.dispatcher import Dispatcher
from ..runtime.intake import Intake, IntakeQueue
from ..runtime.pacing import Pacer, plan_for
from ..runtime.processor import EventProcessor
from ..runtime.registry import FlowRegistry
from ..runtime.rendering import Organisation
from ..settings import Settings
from ..store import InboundArchive, SqlStore, connect, pending, upgrade
from ..store.delivery import DeliveryLedger
from ..store.published import Published
from ..template_check import TemplateCheck
from ..templates import TemplateSet

__all__ = ["DispatchLoop", "Runtime", "connectors_for"]

log = logging.getLogger(__name__)


@dataclass(repr=False)
class Runtime:
    settings: Settings
    store: SqlStore
    flows: FlowRegistry
    processor: EventProcessor
    intake: Intake
    # What the send threads learned (opt-outs), kept in the store and taken by `tick`.
    deferred: IntakeQueue
    dispatcher: Dispatcher
    clock: Clock
    _loop: DispatchLoop | None = field(default=None, init=False)
    # Whether `tick` dispatches: the `dispatch` setting, or a process run to dispatch.
    _dispatching: bool = field(default=True, init=False)
    # Registries are installed one at a time, never an older over a newer one.
    _flows_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __repr__(self) -> str:
        # Short: the generated repr spelled out every flow and template (hundreds
        # of KiB), which buried a failing test's own message (hypothesis prints it).
        return f"Runtime(store={self.store.dialect}, flows={len(self.flows.current)})"

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        migrate: bool = True,
        owner: str = "embedded",
    ) -> Runtime:
        """Build the runtime from settings (the one place that reads them).

        Raises:
            FlowError: the flows or templates are invalid.
            StoreError: the store is unreachable, or its schema is behind and
                `migrate` is off.
        """
        clock = clock or SystemClock()
        templates = TemplateSet(settings.templates)
        org = Organisation.of(settings)
        # The templates are checked as this organisation sends them.
        flow_set = load_flows([settings.flows], TemplateCheck(templates, org))
        engine = connect(settings.db)
        if migrate:
            upgrade(engine)
        elif pending(engine):
            raise StoreError("the store's schema is behind: run `orchestrator db upgrade`")
        store = SqlStore(engine)
        registry = FlowRegistry.open(
            flow_set, store, clock.now(), Published(store.transactions).templates()
        )
        for flow_id in registry.current:
            behind = registry.behind(flow_id)
            if behind is not None:
                # Loud: the file is not what runs, and editing it changes nothing.
                log.warning(
                    "flows.file_behind",
                    extra={
                        "flow": flow_id,
                        "file": behind,
                        "running_version": registry.current[flow_id].version,
                        "hint": f"orchestrator flows export {flow_id}",
                    },
                )
        processor = EventProcessor(store, registry, clock, settle_after=settings.settle_after)
        intake = Intake(processor, store, clock)
        deferred = IntakeQueue(intake, InboundArchive(store), settings.default_region)
        connectors, real = connectors_for(settings, store, clock, deferred)
        plan = plan_for(settings)
        plan.log()  # each sender's pace, or why it is not paced: an operator sees what it got
        dispatcher = Dispatcher(
            store=store,
            flows=registry,
            templates=templates,
            connectors=connectors,
            clock=clock,
            org=org,
            owner=owner,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
            backoff=timedelta(seconds=settings.retry_backoff_seconds),
            stale_after=settings.stale_after,
            batch=settings.dispatch_batch,
            # Threads pay off only while a network send is waited for.
            concurrency=settings.dispatch_concurrency if real else 1,
            # Every process on the store paces through the same buckets.
            pacer=Pacer(store, plan) if plan.senders else None,
        )
        runtime = cls(settings, store, registry, processor, intake, deferred, dispatcher, clock)
        runtime._dispatching = settings.dispatch
        # An event for a journey on a version published by another process since
        # this one's last tick: take that version up first, rather than reject the event.
        processor.missing_version = runtime.refresh_flows
        return runtime

    def tick(self) -> int:
        """Take up a newly published flow version, take what the send threads deferred,
        then dispatch one batch; how many were handled.

        A process that does not dispatch (the `dispatch` setting off) ticks
        too, for the versions: new episodes start on the version published
        last, whichever process published it.

        Neither a version the store cannot hand over nor the deferred intake
        failing keeps the dispatcher from its batch: it goes on with the flows
        it has, and the failure is logged every tick until it is repaired.
        """
        try:
            self.refresh_flows()
        except Exception as exc:  # noqa: BLE001 - dispatch outlives a bad version row; logged
            log.error("flows.refresh_failed", extra={"error": exc.__class__.__name__})
        taken = self._take_deferred()
        return taken + (self.dispatcher.tick() if self._dispatching else 0)

    def refresh_flows(self) -> bool:
        """Take up the flow versions recorded since, if any (one small query); whether any were."""
        published = Published(self.store.transactions)
        newest = published.newest()
        if all(newest.get(f, 0) <= flow.version for f, flow in self.flows.current.items()):
            return False
        self.use_flows(self.flows.reloaded(self.store, published.templates()))
        return True

    def use_flows(self, registry: FlowRegistry) -> None:
        """Run on `registry` from now on: new episodes start on its current versions.

        Each part swaps its one reference between two of its batches, so a
        batch runs on one registry. The dispatcher first: versions only grow,
        so it knows every version the processor may schedule a message on.
        A registry behind the one installed (two publishes in this process,
        the later one installed first) is not installed: versions only grow.
        """
        with self._flows_lock:
            if _behind(registry, self.flows):
                return
            self.dispatcher.use(registry)
            self.processor.use(registry)
            self.flows = registry

    def _take_deferred(self) -> int:
        try:
            return self.deferred.drain()
        except Exception as exc:  # noqa: BLE001 - what is queued stays queued; dispatch goes on
            log.error("intake.deferred_failed", extra={"error": exc.__class__.__name__})
            return 0

    def start(self) -> None:
        """Run the dispatch loop on a thread (a second call does nothing).

        With the `dispatch` setting off the loop only takes up new flow
        versions: this process takes events in, and `orchestrator dispatch`
        processes send what falls due.
        """
        if not self._dispatching:
            log.info("dispatch.off")
        if self._loop is None:
            self._loop = DispatchLoop(self.tick, self.settings.dispatch_poll_seconds, self.clock)
            self._loop.start()

    def dispatch_here(self) -> DispatchLoop:
        """The dispatch loop, to run in the caller's thread (`orchestrator dispatch`).

        Whatever the `dispatch` setting: a process run to dispatch dispatches.
        `loop.run()` returns once `loop.stop()` is called (from a signal handler).
        """
        self._dispatching = True
        return DispatchLoop(self.tick, self.settings.dispatch_poll_seconds, self.clock)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the dispatch loop, letting the message in hand finish (safe to call twice)."""
        if self._loop is not None:
            self._loop.stop(timeout)
            self._loop = None
        # What a last send deferred is kept in the store anyway; taken now, it applies sooner.
        self._take_deferred()

    def close(self) -> None:
        """Stop, and release the store's connections."""
        self.stop()
        self.store.engine.dispose()


def connectors_for(
    settings: Settings, store: SqlStore, clock: Clock, deferred: EventIntake
) -> tuple[dict[Channel, Connector], bool]:
    """A connector for every channel: the real one where its credentials are set, else
    the sandbox; and whether any is real (`deferred`: see `real_connectors`).

    Raises:
        ChannelConfigError: a real channel is partly configured.
    """
    real = real_connectors(settings, DeliveryLedger(store.transactions), clock, deferred)
    return _connectors(store, clock, settings.sandbox_latency_seconds) | real, bool(real)


def _connectors(store: Outbox, clock: Clock, latency: float) -> dict[Channel, Connector]:
    # Imported here: the composition root picks the connectors; the runtime knows the port.
    from connectors.sandbox import SandboxConnector

    return {channel: SandboxConnector(store, channel, clock, latency) for channel in Channel}


# Idles until the instant given, or until woken earlier; True: the loop is to stop.
Wait = Callable[[datetime], bool]


def _behind(registry: FlowRegistry, installed: FlowRegistry) -> bool:
    """Whether `registry` runs an older version of some flow than `installed` does."""
    return any(
        flow_id in registry.current and registry.current[flow_id].version < flow.version
        for flow_id, flow in installed.current.items()
    )


class DispatchLoop:
    """Runs `tick` until stopped; idles `poll` seconds when it handled nothing.

    `wait` is how it idles: by default it sleeps on the wall clock (and wakes
    when stopped); a driver on a virtual clock passes its own, which moves
    the clock and hands in what arrives meanwhile (`tests/test_simulate_parity.py`).
    """

    def __init__(
        self, tick: Callable[[], int], poll: float, clock: Clock, *, wait: Wait | None = None
    ) -> None:
        self.tick = tick
        self.poll = poll
        self.clock = clock
        self._poll = timedelta(seconds=poll)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wait = wait or self._sleep
        # The last failure of each kind, for the operator and the tests that drive the loop.
        self.error: BaseException | None = None
        self.store_error: StoreError | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop and wait for the message in hand (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _sleep(self, until: datetime) -> bool:
        return self._stop.wait(max(0.0, (until - self.clock.now()).total_seconds()))

    def run(self) -> None:
        """Tick and idle, here, until stopped (`start` runs this on a thread)."""
        while not self._stop.is_set():
            try:
                handled = self.tick()
            except StoreError as exc:
                # The store may come back (a restart, a network blip): wait and retry.
                log.error("dispatch.store_unavailable", extra={"error": exc.__class__.__name__})
                self.store_error = exc
                handled = 0
            except Exception as exc:  # noqa: BLE001 - the loop outlives a bad batch; leases recover it
                log.error("dispatch.tick_failed", extra={"error": exc.__class__.__name__})
                self.error = exc
                handled = 0
            if handled == 0 and self._wait(self.clock.now() + self._poll):
                return
