"""An embedded service for the inbound tests, with the shipped flows loaded once.

Loading and checking the shipped flows and templates takes seconds; they do
not change within a run, so every service built here shares one loaded copy.
Everything else (store, processor, clock) is new for each service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

import orchestrator.service.runtime as service_module
from orchestrator.clock import Clock
from orchestrator.flows import load_flows
from orchestrator.runtime.rendering import Organisation
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet

__all__ = ["build_service"]

_LOADED: dict[tuple[Path, Path], tuple[TemplateSet, Any]] = {}


def build_service(settings: Settings, clock: Clock) -> EmbeddedService:
    key = (settings.flows, settings.templates)
    if key not in _LOADED:
        templates = TemplateSet(settings.templates)
        check = TemplateCheck(templates, Organisation.of(settings))
        _LOADED[key] = (templates, load_flows([settings.flows], check))
    templates, flow_set = _LOADED[key]
    with (
        patch.object(service_module, "load_flows", lambda *_a, **_k: flow_set),
        patch.object(service_module, "TemplateSet", lambda *_a: templates),
    ):
        return EmbeddedService.build(settings, clock=clock)
