"""The console's one door to measured figures: swap these functions, and every page follows.

Today they read journeys through the store and fold them (`insight.reading`);
faster aggregates may replace them without any page changing.
"""

from __future__ import annotations

from collections import Counter

from ..flows.model import Flow
from ..insight import FlowFigures
from ..insight.reading import measured
from ..journey import EpisodeStatus
from ..store import SqlStore

__all__ = ["flow_figures_for", "running_by_version"]


def flow_figures_for(store: SqlStore, flow: Flow) -> FlowFigures:
    """The measured figures of `flow` (funnel, messages, transitions), all versions together."""
    return measured(store, flow)


def running_by_version(store: SqlStore, flow_id: str) -> dict[int, int]:
    """How many episodes of `flow_id` are still active, by the version they run on."""
    running: Counter[int] = Counter()
    for version, journey in store.flow_journeys(flow_id):
        running[version] += sum(e.status is EpisodeStatus.ACTIVE for e in journey.episodes)
    return dict(running)
