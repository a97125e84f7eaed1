"""Patient communication orchestrator.

The pure core: the canonical `Event`, `Flow` definitions, the journey engine
(`advance`) and the send-time policies. The shell around it (loaders,
templates, CLI) lives in its own modules and is re-exported here only where
users need it. Every name is imported on first use, so `import
orchestrator.engine` loads the core alone, not the YAML and pydantic loaders.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

from .lazy import exports

if TYPE_CHECKING:
    from .actions import (
        Action,
        CancelMessage,
        Decision,
        EndEpisode,
        EnterStage,
        ExpireMessage,
        ScheduleMessage,
    )
    from .clock import Clock, SystemClock, VirtualClock
    from .decisions import DecisionRecord
    from .engine import advance, route
    from .errors import (
        FlowError,
        FlowProblem,
        InputError,
        OrchestratorError,
        PermanentSendError,
        SendError,
        StoreError,
        TemplateError,
        TransientSendError,
    )
    from .event import Appointment, Caregiver, Channel, Encounter, Event, EventType, Patient
    from .event_schema import dump_event, parse_event, parse_event_json
    from .flows import Flow, load_flows
    from .journey import Episode, EpisodeStatus, Journey, Recipient, ScheduledMessage
    from .simulate import Simulator, simulate

__all__ = [
    "Action",
    "Appointment",
    "CancelMessage",
    "Caregiver",
    "Channel",
    "Clock",
    "Decision",
    "DecisionRecord",
    "Encounter",
    "EndEpisode",
    "EnterStage",
    "Episode",
    "EpisodeStatus",
    "Event",
    "EventType",
    "ExpireMessage",
    "Flow",
    "FlowError",
    "FlowProblem",
    "InputError",
    "Journey",
    "OrchestratorError",
    "Patient",
    "PermanentSendError",
    "Recipient",
    "ScheduleMessage",
    "ScheduledMessage",
    "SendError",
    "Simulator",
    "StoreError",
    "SystemClock",
    "TemplateError",
    "TransientSendError",
    "VirtualClock",
    "advance",
    "dump_event",
    "load_flows",
    "parse_event",
    "parse_event_json",
    "route",
    "simulate",
]

# Where each name lives. Imported on first use (PEP 562), so importing one
# module of the package does not load the rest of it.
_HOME = {
    "Action": ".actions",
    "Appointment": ".event",
    "CancelMessage": ".actions",
    "Caregiver": ".event",
    "Channel": ".event",
    "Clock": ".clock",
    "Decision": ".actions",
    "DecisionRecord": ".decisions",
    "Encounter": ".event",
    "EndEpisode": ".actions",
    "EnterStage": ".actions",
    "Episode": ".journey",
    "EpisodeStatus": ".journey",
    "Event": ".event",
    "EventType": ".event",
    "ExpireMessage": ".actions",
    "Flow": ".flows",
    "FlowError": ".errors",
    "FlowProblem": ".errors",
    "InputError": ".errors",
    "Journey": ".journey",
    "OrchestratorError": ".errors",
    "Patient": ".event",
    "PermanentSendError": ".errors",
    "Recipient": ".journey",
    "ScheduleMessage": ".actions",
    "ScheduledMessage": ".journey",
    "SendError": ".errors",
    "Simulator": ".simulate",
    "StoreError": ".errors",
    "SystemClock": ".clock",
    "TemplateError": ".errors",
    "TransientSendError": ".errors",
    "VirtualClock": ".clock",
    "advance": ".engine",
    "dump_event": ".event_schema",
    "load_flows": ".flows",
    "parse_event": ".event_schema",
    "parse_event_json": ".event_schema",
    "route": ".engine",
    "simulate": ".simulate",
}


__getattr__, __dir__ = exports(__name__, _HOME)


class _Package(ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # The import system binds a submodule on its package once it has loaded
        # it; where a public name is also a submodule's name (`simulate`), the
        # name keeps meaning what `__all__` says, not the submodule.
        if isinstance(value, ModuleType) and _HOME.get(name) == f".{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
