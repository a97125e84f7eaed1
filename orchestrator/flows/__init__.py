"""Flows: a care path's stages, triggers and messages; their file format and checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

if TYPE_CHECKING:
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

# Where each name lives. Imported on first use (PEP 562), so importing one
# module of the package does not load the rest of it.
_HOME = {
    "ANY_STAGE": ".model",
    "Anchor": ".timing",
    "Condition": ".model",
    "Exit": ".model",
    "Flow": ".model",
    "FlowFile": ".schema",
    "FlowSet": ".loader",
    "FrequencyCap": ".model",
    "MessageSpec": ".model",
    "QuietHours": ".model",
    "Stage": ".model",
    "StageCategory": ".model",
    "SuccessMetric": ".model",
    "Timing": ".timing",
    "Trigger": ".model",
    "flow_json_schema": ".schema",
    "flow_paths": ".loader",
    "load_flow": ".loader",
    "load_flows": ".loader",
    "parse_duration": ".timing",
    "parse_timing": ".timing",
}


__getattr__, __dir__ = exports(__name__, _HOME)
