"""The HTTP service's Prometheus metrics: counters the routes add to, gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import StoreError
from ..store import SqlStore

__all__ = ["Metrics"]


class _MessageStatusCollector(Collector):
    """Scheduled messages by status, read from the store at scrape time."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "orchestrator_messages", "Scheduled messages by status", labels=["status"]
        )
        try:
            for name, count in sorted(self.store.message_statuses().items()):
                family.add_metric([name], count)
        except StoreError:
            pass  # /readyz reports the store; a scrape still returns the counters
        yield family


@dataclass(frozen=True)
class Metrics:
    """One app's metrics, in a registry of their own (two apps in a process do not clash)."""

    registry: CollectorRegistry
    events_total: Counter
    bodies_rejected: Counter

    @classmethod
    def over(cls, store: SqlStore) -> Metrics:
        registry = CollectorRegistry()
        events_total = Counter(
            "orchestrator_events", "Events received, by result", ["result"], registry=registry
        )
        bodies_rejected = Counter(
            "orchestrator_rejected_bodies",
            "Request bodies rejected whole",
            ["reason"],
            registry=registry,
        )
        up = Gauge("orchestrator_up", "1 while the service runs", registry=registry)
        registry.register(_MessageStatusCollector(store))
        up.set(1)
        return cls(registry, events_total, bodies_rejected)
