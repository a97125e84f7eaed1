"""The composition root and how it is served.

`Runtime` (`runtime.py`) turns settings into the concrete store, the flow
registry, the event processor, the intake, the connectors and the dispatcher
with its loop; the embedded service (HTTP and MLLP, `inbound.py`:
`orchestrator run`) and the Kafka worker (`orchestrator worker`) are
transports over one. Only here, and in the API and CLI around it, does a
concrete store meet the runtime: `orchestrator/runtime/` knows the ports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import DispatchLoop, Runtime, connectors_for
    from .runtime import Runtime as EmbeddedService

__all__ = ["DispatchLoop", "EmbeddedService", "Runtime", "connectors_for"]

# Imported on first use (PEP 562): a command that needs no store does not load one.
_HOME = {"DispatchLoop": ".runtime", "Runtime": ".runtime", "connectors_for": ".runtime"}


def __getattr__(name: str) -> object:
    if name == "EmbeddedService":
        # The name the HTTP service, the CLI and the tests knew the runtime by.
        name = "Runtime"
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
