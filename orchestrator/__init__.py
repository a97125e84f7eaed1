"""Patient communication orchestrator.

The pure core: the canonical `Event`, `Flow` definitions, the journey engine
(`advance`) and the send-time policies. The shell around it (loaders,
templates, CLI) lives in its own modules and is re-exported here only where
users need it.
"""

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
