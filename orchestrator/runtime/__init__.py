"""The runtimes' shared machinery: the intake, event processing, dispatch, flow versions,
and the `Runtime` both are built from."""

from .dispatcher import Connector, Dispatcher, Outgoing, Receipt
from .intake import Intake, IntakeQueue
from .processor import EventProcessor, EventResult
from .registry import FlowRegistry
from .rendering import Organisation, render_context
from .runtime import Runtime
from .service import DispatchLoop, EmbeddedService

__all__ = [
    "Connector",
    "DispatchLoop",
    "Dispatcher",
    "EmbeddedService",
    "EventProcessor",
    "EventResult",
    "FlowRegistry",
    "Intake",
    "IntakeQueue",
    "Organisation",
    "Outgoing",
    "Receipt",
    "Runtime",
    "render_context",
]
