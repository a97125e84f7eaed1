"""Garbage-collector settings for the long-running processes (service, worker, simulate).

The engine allocates many small, acyclic, frozen objects per decision; reference
counting frees them, yet CPython's default gen0 threshold (700 allocations)
runs the cycle collector every few decisions, and each full collection walks
every journey held. A larger gen0 threshold, and the start-up heap (flows,
templates, modules) frozen out of the collector's reach, cut that overhead
(bench/engine.py --gc-tuned). A process-level setting: the composition roots
call `tune_for_throughput()` once after start-up; the pure core never does.

Self-contained (imports only `gc`): bench/engine.py loads this file by path to
apply the same settings to a baseline tree that lacks it.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_for_throughput"]

# Container allocations between young collections (CPython's default: 700);
# then every 50 young collections a middle one, every 100 of those a full one
# (which CPython also defers until the long-lived heap grew by a quarter).
THRESHOLDS = (50_000, 50, 100)


def tune_for_throughput() -> None:
    """Collect once, freeze what start-up built, and raise the collection thresholds.

    Call once, after start-up and before the event loop (calling it again only
    freezes what has been built since).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
