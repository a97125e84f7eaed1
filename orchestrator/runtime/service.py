"""The embedded service's name for the `Runtime` it runs HTTP (and MLLP) over.

The composition root is `orchestrator/runtime/runtime.py`; the Kafka worker
builds the same `Runtime`. `EmbeddedService` stays the name the HTTP
service, the CLI and the tests know it by.
"""

from __future__ import annotations

from .runtime import DispatchLoop, Runtime

__all__ = ["DispatchLoop", "EmbeddedService"]

EmbeddedService = Runtime
