"""The runtimes' shared machinery: the intake, event processing, dispatch, flow versions
and rendering, typed against the ports (`orchestrator.service` builds them on a store)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:
    from .dispatcher import Connector, Dispatcher, Outgoing, Receipt
    from .intake import Intake, IntakeQueue
    from .processor import EventProcessor, EventResult
    from .registry import FlowRegistry
    from .rendering import Organisation, render_context

__all__ = [
    "Connector",
    "Dispatcher",
    "EventProcessor",
    "EventResult",
    "FlowRegistry",
    "Intake",
    "IntakeQueue",
    "Organisation",
    "Outgoing",
    "Receipt",
    "render_context",
]

# Where each name lives. Imported on first use (PEP 562): the preview renders
# with `rendering` alone, without the dispatcher's connectors and policies.
_HOME = {
    "Connector": ".dispatcher",
    "Dispatcher": ".dispatcher",
    "EventProcessor": ".processor",
    "EventResult": ".processor",
    "FlowRegistry": ".registry",
    "Intake": ".intake",
    "IntakeQueue": ".intake",
    "Organisation": ".rendering",
    "Outgoing": ".dispatcher",
    "Receipt": ".dispatcher",
    "render_context": ".rendering",
}


__getattr__, __dir__ = exports(__name__, _HOME)
