"""The runtimes' shared machinery: flow versions, event processing, dispatch."""

from .dispatcher import Connector, Dispatcher, Outgoing, Receipt
from .processor import EventProcessor, EventResult
from .registry import FlowRegistry
from .rendering import Organisation, render_context
from .service import DispatchLoop, EmbeddedService

__all__ = [
    "Connector",
    "DispatchLoop",
    "Dispatcher",
    "EmbeddedService",
    "EventProcessor",
    "EventResult",
    "FlowRegistry",
    "Organisation",
    "Outgoing",
    "Receipt",
    "render_context",
]
