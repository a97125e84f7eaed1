"""The collector settings the long-running processes apply after start-up."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator import gc_tuning
from orchestrator.cli import app
from tests.builders import at, flow_data, make_event_data, make_flow, templates_for


def test_tuning_freezes_the_start_up_heap_and_raises_the_thresholds() -> None:
    built_at_start_up = [object() for _ in range(10)]
    gc_tuning.tune_for_throughput()
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert gc_tuning.THRESHOLDS[0] > 700  # above CPython's default young threshold
    assert built_at_start_up


def test_simulate_tunes_the_collector_once_its_input_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "test-flow.yaml").write_text(yaml.safe_dump(flow_data()))
    templates = templates_for([make_flow()], tmp_path / "templates")
    monkeypatch.setenv("ORCHESTRATOR_TEMPLATES", str(templates.root))
    event = make_event_data("appointment.booked", occurred_at=at(), start=at(days=8), id="e-1")
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n")
    calls: list[None] = []
    monkeypatch.setattr("orchestrator.cli.simulate.tune_for_throughput", lambda: calls.append(None))
    result = CliRunner().invoke(app, ["simulate", "--events", str(events), "--flows", str(flows)])
    assert result.exit_code == 0, result.output
    assert calls == [None]
