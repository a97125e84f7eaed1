"""Flows: a care path's stages, triggers and messages; their file format and checks."""

from .loader import FlowSet, flow_paths, load_flow, load_flows
from .model import (
    ANY_STAGE,
    Condition,
    Exit,
    Flow,
    FrequencyCap,
    MessageSpec,
    QuietHours,
    Stage,
    StageCategory,
    SuccessMetric,
    Trigger,
)
from .schema import FlowFile, flow_json_schema
from .timing import Anchor, Timing, parse_duration, parse_timing

__all__ = [
    "ANY_STAGE",
    "Anchor",
    "Condition",
    "Exit",
    "Flow",
    "FlowFile",
    "FlowSet",
    "FrequencyCap",
    "MessageSpec",
    "QuietHours",
    "Stage",
    "StageCategory",
    "SuccessMetric",
    "Timing",
    "Trigger",
    "flow_json_schema",
    "flow_paths",
    "load_flow",
    "load_flows",
    "parse_duration",
    "parse_timing",
]
