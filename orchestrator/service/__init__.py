"""The composition root and how it is served.

`Runtime` (`runtime.py`) turns settings into the concrete store, the flow
registry, the event processor, the intake, the connectors and the dispatcher
with its loop; the embedded service (HTTP and MLLP, `inbound.py`:
`orchestrator run`) and the Kafka worker (`orchestrator worker`) are
transports over one. Only here, and in the API and CLI around it, does a
concrete store meet the runtime: `orchestrator/runtime/` knows the ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:
    from .runtime import DispatchLoop, Runtime, connectors_for
    from .runtime import Runtime as EmbeddedService

__all__ = ["DispatchLoop", "EmbeddedService", "Runtime", "connectors_for"]

# Imported on first use (PEP 562): a command that needs no store does not load one.
_HOME = {"DispatchLoop": ".runtime", "Runtime": ".runtime", "connectors_for": ".runtime"}


__getattr__, __dir__ = exports(__name__, _HOME, {"EmbeddedService": "Runtime"})
