"""Golden timelines: each shipped flow's sample stream, simulated, gives the recorded decisions.

`simulate` runs the service's own processor and dispatcher, so these guard
the code that sends: a change to a flow, a template, the engine, the
policies or the dispatcher that changes what a patient would receive shows
up here as a diff. After checking the new timeline by
eye, record it with `UPDATE_GOLDEN=1 make test`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from orchestrator.event_schema import parse_event_json
from orchestrator.flows import load_flows
from orchestrator.runtime.rendering import Organisation
from orchestrator.settings import Settings
from orchestrator.simulate import simulate
from orchestrator.template_check import TemplateCheck
from orchestrator.templates import TemplateSet

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = sorted((ROOT / "samples" / "events").glob("*.jsonl"))


@functools.cache  # each stream once: both tests below read the same timeline
def timeline(sample: Path) -> list[str]:
    templates = TemplateSet(ROOT / "templates")
    org = Organisation.of(Settings())
    flows = load_flows([ROOT / "flows"], TemplateCheck(templates, org)).flows
    events = [parse_event_json(line) for line in sample.read_text().splitlines() if line.strip()]
    return [
        json.dumps(record.as_json(), sort_keys=True)
        for record in simulate(events, flows, templates)
    ]


def test_every_shipped_flow_has_a_sample_stream() -> None:
    flows = load_flows([ROOT / "flows"]).flows
    assert sorted(p.stem for p in SAMPLES) == sorted(flows)


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_stream_gives_the_golden_timeline(sample: Path) -> None:
    lines = timeline(sample)
    golden = GOLDEN / f"{sample.stem}.jsonl"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text("\n".join(lines) + "\n")
    assert golden.exists(), f"no golden timeline for {sample.stem}; record it with UPDATE_GOLDEN=1"
    assert lines == golden.read_text().splitlines()


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_stream_sends_something_and_every_decision_is_final(sample: Path) -> None:
    records = [json.loads(line) for line in timeline(sample)]
    scheduled = {r["key"] for r in records if r["status"] == "scheduled"}
    final = {r["key"] for r in records if r["status"] != "scheduled"}
    assert any(r["status"] == "sent" for r in records)
    assert scheduled <= final, "a scheduled message never reached a final decision"
