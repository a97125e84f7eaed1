"""What a flow change does: the decisions of one event stream under two flow sets, diffed.

Each run is reduced to message *instances*: one per idempotency key, with
the due time the engine gave it and the last decision about it (sent,
suppressed and why, cancelled, expired, or still scheduled at the end of
the run). An instance cancelled because its appointment moved is left out:
the instance that replaced it stands for it. Instances are matched per
patient, flow, episode, message and recipient, in due order: same due time
first, then the rest in order. What is left over was added or removed; a
matched pair whose due time differs moved; one whose outcome differs was
suppressed (the change left it suppressed: a holdout, a cap) or otherwise
changed. Changes are counted per stage as well (`by_stage`), the stage the
message belongs to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..decisions import DecisionRecord

__all__ = ["KINDS", "Change", "Comparison", "Instance", "compare", "instances"]

# Cancellations that only mean "replaced by a re-timed instance".
_SUPERSEDED = frozenset({"rescheduled", "encounter_updated"})

Slot = tuple[str, str, str, str, str]

# Every kind of change, in the order they are reported.
KINDS = ("added", "removed", "moved", "suppressed", "changed")


@dataclass(frozen=True, slots=True)
class Instance:
    patient_id: str
    flow: str
    episode: str
    message: str
    recipient: str
    stage: str
    due_at: datetime
    status: str
    reason: str | None

    @property
    def slot(self) -> Slot:
        return (self.patient_id, self.flow, self.episode, self.message, self.recipient)

    @property
    def outcome(self) -> str:
        return f"{self.status}:{self.reason}" if self.reason else self.status


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: `kind` is one of `KINDS`."""

    kind: str
    before: Instance | None
    after: Instance | None

    @property
    def instance(self) -> Instance:
        found = self.after or self.before
        assert found is not None
        return found

    def as_json(self) -> dict[str, str | None]:
        i = self.instance
        return {
            "change": self.kind,
            "patient_id": i.patient_id,
            "flow": i.flow,
            "episode": i.episode,
            "stage": i.stage,
            "message": i.message,
            "recipient": i.recipient,
            "due_before": self.before.due_at.isoformat() if self.before else None,
            "due_after": self.after.due_at.isoformat() if self.after else None,
            "outcome_before": self.before.outcome if self.before else None,
            "outcome_after": self.after.outcome if self.after else None,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    changes: tuple[Change, ...]
    unchanged: int

    @property
    def summary(self) -> Mapping[str, int]:
        counts = Counter(c.kind for c in self.changes)
        return {kind: counts[kind] for kind in KINDS}

    def by_message(self) -> Mapping[tuple[str, str, str], int]:
        """(flow, message, kind) -> how many."""
        counts = Counter((c.instance.flow, c.instance.message, c.kind) for c in self.changes)
        return dict(sorted(counts.items()))

    def by_stage(self) -> Mapping[tuple[str, str], Mapping[str, int]]:
        """(flow, stage) -> how many of each kind, for the stages with a change."""
        counts = Counter((c.instance.flow, c.instance.stage, c.kind) for c in self.changes)
        stages = sorted({(flow, stage) for flow, stage, _ in counts})
        return {
            (flow, stage): {kind: counts[(flow, stage, kind)] for kind in KINDS}
            for flow, stage in stages
        }

    def as_json(self) -> dict[str, Any]:
        """The whole comparison as JSON-ready data: summary, per stage, and every change."""
        return {
            "summary": dict(self.summary),
            "unchanged": self.unchanged,
            "stages": [
                {"flow": flow, "stage": stage, **counts}
                for (flow, stage), counts in self.by_stage().items()
            ],
            "changes": [c.as_json() for c in self.changes],
        }


def instances(records: Iterable[DecisionRecord]) -> list[Instance]:
    """One instance per key: its first due time and its last decision."""
    first: dict[str, DecisionRecord] = {}
    last: dict[str, DecisionRecord] = {}
    for r in records:
        first.setdefault(r.key, r)
        if r.status != "scheduled" or r.key not in last or last[r.key].status == "scheduled":
            last[r.key] = r
    found = []
    for key, start in first.items():
        end = last[key]
        if end.status == "cancelled" and end.reason in _SUPERSEDED:
            continue
        found.append(
            Instance(
                start.patient_id,
                start.flow,
                start.episode,
                start.message,
                start.recipient,
                start.stage,
                start.due_at,
                end.status,
                end.reason if end.status != "scheduled" else None,
            )
        )
    return found


def compare(before: Iterable[DecisionRecord], after: Iterable[DecisionRecord]) -> Comparison:
    """The differences between two runs of the same events."""
    old: dict[Slot, list[Instance]] = defaultdict(list)
    new: dict[Slot, list[Instance]] = defaultdict(list)
    for i in instances(before):
        old[i.slot].append(i)
    for i in instances(after):
        new[i.slot].append(i)
    changes: list[Change] = []
    unchanged = 0
    for slot in sorted(old.keys() | new.keys()):
        a = sorted(old.get(slot, ()), key=lambda i: i.due_at)
        b = sorted(new.get(slot, ()), key=lambda i: i.due_at)
        pairs: list[tuple[Instance, Instance]] = []
        for x in list(a):
            match = next((y for y in b if y.due_at == x.due_at), None)
            if match is not None:
                pairs.append((x, match))
                a.remove(x)
                b.remove(match)
        pairs += list(zip(a, b, strict=False))
        matched = min(len(a), len(b))
        changes += [Change("removed", x, None) for x in a[matched:]]
        changes += [Change("added", None, y) for y in b[matched:]]
        for x, y in pairs:
            if x.due_at != y.due_at:
                changes.append(Change("moved", x, y))
            elif x.outcome != y.outcome:
                kind = "suppressed" if y.status == "suppressed" else "changed"
                changes.append(Change(kind, x, y))
            else:
                unchanged += 1
    changes.sort(key=lambda c: (c.instance.patient_id, c.instance.due_at, c.instance.message))
    return Comparison(tuple(changes), unchanged)
