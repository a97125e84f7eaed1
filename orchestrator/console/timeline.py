"""A patient's timeline as the console shows it: what happened, in time order, and what is next.

Pure: built from the store's per-patient reads (events with their source,
journeys with their settled episodes, scheduled messages, audit rows), so a
test gives it rows and reads the entries back. Rendering bodies is left to
`console.patients`, which alone knows the templates and the role.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..decisions import DecisionRecord
from ..journey import Journey
from ..ports import MessageView
from ..store import PatientEventView

__all__ = ["Entry", "MessageLine", "StatusStep", "Timeline", "timeline"]

Kind = Literal["event", "episode", "stage", "ended", "message"]


@dataclass(frozen=True, slots=True)
class StatusStep:
    """One audited decision about a message: when, what status, why."""

    at: datetime
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class MessageLine:
    """A scheduled message with its status, reason, channel, language, times and history."""

    view: MessageView
    language: str | None
    steps: tuple[StatusStep, ...]

    @property
    def at(self) -> datetime:
        """When it went out, or when it is (or was) due."""
        return self.view.sent_at or self.view.due_at


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline."""

    at: datetime
    kind: Kind
    title: str
    detail: str = ""
    message: MessageLine | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    patient_id: str
    entries: tuple[Entry, ...]
    # Scheduled messages by due time: what happens next.
    pending: tuple[MessageLine, ...]
    # Events beyond the read's limit are not listed.
    events_cut: bool = False
    episodes: int = 0
    flows: tuple[str, ...] = field(default_factory=tuple)


# Shown before a message of the same instant: the event caused it.
_ORDER: dict[Kind, int] = {"event": 0, "episode": 1, "stage": 2, "message": 3, "ended": 4}


def timeline(
    patient_id: str,
    events: Sequence[PatientEventView],
    journeys: Sequence[tuple[int, Journey]],
    messages: Sequence[MessageView],
    audit: Sequence[DecisionRecord],
    *,
    events_cut: bool = False,
) -> Timeline:
    """The patient's entries in time order, and their pending messages by due time."""
    entries = [
        Entry(
            e.occurred_at,
            "event",
            e.type,
            f"from {e.source}, received {e.received_at:%Y-%m-%d %H:%M} UTC",
        )
        for e in events
    ]
    for version, journey in journeys:
        for episode in journey.episodes:
            entries.append(
                Entry(
                    episode.started_at,
                    "episode",
                    f"episode started: {journey.flow_id} version {version}",
                    episode.id,
                )
            )
            for visit in episode.history:
                entries.append(
                    Entry(
                        visit.entered_at,
                        "stage",
                        f"entered stage {visit.stage_id}",
                        f"on {visit.event_id}",
                    )
                )
            if episode.ended_at is not None:
                outcome = f": {episode.outcome}" if episode.outcome else ""
                entries.append(
                    Entry(
                        episode.ended_at,
                        "ended",
                        f"episode {episode.status.value}{outcome}",
                        episode.id,
                    )
                )
    steps: dict[str, list[StatusStep]] = defaultdict(list)
    languages: dict[str, str] = {}
    for record in sorted(audit, key=lambda r: r.at):
        steps[record.key].append(StatusStep(record.at, record.status, record.reason))
        if record.language:
            languages[record.key] = record.language
    lines = [MessageLine(m, languages.get(m.key), tuple(steps.get(m.key, ()))) for m in messages]
    for line in lines:
        view = line.view
        entries.append(
            Entry(
                line.at,
                "message",
                f"{view.flow} · {view.stage} · {view.message}",
                view.status,
                line,
            )
        )
    entries.sort(key=lambda e: (e.at, _ORDER[e.kind], e.title))
    pending = sorted(
        (line for line in lines if line.view.status == "scheduled"),
        key=lambda line: (line.view.due_at, line.view.key),
    )
    return Timeline(
        patient_id,
        tuple(entries),
        tuple(pending),
        events_cut=events_cut,
        episodes=sum(len(j.episodes) for _, j in journeys),
        flows=tuple(dict.fromkeys(j.flow_id for _, j in journeys if j.episodes)),
    )
