"""The sample streams, replicated with fresh ids, as benchmark input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_samples() -> list[dict[str, Any]]:
    """Every event of samples/events/*.jsonl, as decoded JSON."""
    return [
        json.loads(line)
        for path in sorted((ROOT / "samples" / "events").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def relabel(data: dict[str, Any], copy: int) -> dict[str, Any]:
    """A copy of an event with its event, patient, appointment and encounter ids made unique."""
    data = json.loads(json.dumps(data))
    suffix = f"-{copy:06d}"
    data["id"] += suffix
    data["patient"]["id"] += suffix
    for part in ("appointment", "encounter"):
        if data.get(part):
            data[part]["id"] += suffix
    return data


def stream(samples: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The samples, copy after copy, each copy with fresh ids (endless)."""
    copy = 0
    while True:
        for data in samples:
            yield relabel(data, copy)
        copy += 1


# The event fields that hold times, as paths into the event.
_TIMES = (
    ("occurred_at",),
    ("appointment", "start"),
    ("encounter", "admitted_at"),
    ("encounter", "discharged_at"),
)


def shifted_to(samples: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The samples with every time moved so that the latest event occurs at `now`.

    As `orchestrator ingest --shift-to-now` does: a live feed, whose events are
    all in the past and whose messages fall due over the coming days.
    """
    latest = max(datetime.fromisoformat(data["occurred_at"]) for data in samples)
    by = now - latest
    moved = []
    for data in samples:
        copy = json.loads(json.dumps(data))
        for path in _TIMES:
            holder = copy
            for part in path[:-1]:
                holder = holder.get(part) or {}
            value = holder.get(path[-1])
            if isinstance(value, str):
                holder[path[-1]] = (datetime.fromisoformat(value) + by).isoformat()
        moved.append(copy)
    return moved
