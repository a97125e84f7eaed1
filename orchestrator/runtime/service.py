"""The embedded runtime's composition root and its dispatch loop.

`EmbeddedService.build` turns settings into a store, the flow registry, the
event processor and the dispatcher with its connectors. `DispatchLoop`
runs the dispatcher on a thread beside the HTTP server; `stop()` lets the
message in hand finish before it returns.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from ..clock import Clock, SystemClock
from ..errors import StoreError
from ..event import Channel
from ..flows import load_flows
from ..ports import Connector, Outbox
from ..settings import Settings
from ..store import SqlStore, connect, pending, upgrade
from ..store.delivery import DeliveryLedger
from ..templates import TemplateSet
from .channels import real_connectors
from .dispatcher import Dispatcher
from .processor import EventProcessor
from .registry import FlowRegistry
from .rendering import Organisation

__all__ = ["DispatchLoop", "EmbeddedService"]

log = logging.getLogger(__name__)


@dataclass(repr=False)
class EmbeddedService:
    settings: Settings
    store: SqlStore
    flows: FlowRegistry
    processor: EventProcessor
    dispatcher: Dispatcher
    clock: Clock

    def __repr__(self) -> str:
        # Short: the generated repr spelled out every flow and template (hundreds
        # of KiB), which buried a failing test's own message (hypothesis prints it).
        return f"EmbeddedService(store={self.store.dialect}, flows={len(self.flows.current)})"

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        migrate: bool = True,
        owner: str = "embedded",
    ) -> EmbeddedService:
        """Build the service from settings (the one place that reads them).

        Raises:
            FlowError: the flows or templates are invalid.
            StoreError: the store is unreachable, or its schema is behind and
                `migrate` is off.
        """
        clock = clock or SystemClock()
        templates = TemplateSet(settings.templates)
        flow_set = load_flows([settings.flows], templates)
        engine = connect(settings.db)
        if migrate:
            upgrade(engine)
        elif pending(engine):
            raise StoreError("the store's schema is behind: run `orchestrator db upgrade`")
        store = SqlStore(engine)
        registry = FlowRegistry.open(flow_set, store, clock.now())
        processor = EventProcessor(store, registry, clock)
        real = real_connectors(settings, DeliveryLedger(store.transactions), clock, processor)
        connectors = _connectors(store, clock, settings.sandbox_latency_seconds) | real
        dispatcher = Dispatcher(
            store=store,
            flows=registry,
            templates=templates,
            connectors=connectors,
            clock=clock,
            org=Organisation(settings.org_name, settings.org_phone, settings.portal_url),
            owner=owner,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
            backoff=timedelta(seconds=settings.retry_backoff_seconds),
            stale_after=settings.stale_after,
            batch=settings.dispatch_batch,
            # Threads pay off only while a network send is waited for.
            concurrency=settings.dispatch_concurrency if real else 1,
        )
        return cls(settings, store, registry, processor, dispatcher, clock)


def _connectors(store: Outbox, clock: Clock, latency: float) -> dict[Channel, Connector]:
    # Imported here: the composition root picks the connectors; the runtime knows the port.
    from connectors.sandbox import SandboxConnector

    return {channel: SandboxConnector(store, channel, clock, latency) for channel in Channel}


class DispatchLoop:
    """Runs `Dispatcher.tick` until stopped; idles `poll` seconds when nothing is due."""

    def __init__(self, dispatcher: Dispatcher, poll: float) -> None:
        self.dispatcher = dispatcher
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop and wait for the message in hand (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.dispatcher.tick()
            except StoreError as exc:
                # The store may come back (a restart, a network blip): wait and retry.
                log.error("dispatch.store_unavailable", extra={"error": exc.__class__.__name__})
                handled = 0
            except Exception as exc:  # noqa: BLE001 - the loop outlives a bad batch; leases recover it
                log.error("dispatch.tick_failed", extra={"error": exc.__class__.__name__})
                self.error = exc
                handled = 0
            if handled == 0:
                self._stop.wait(self.poll)
