"""What the figures keep of one stage visit, written as events are processed.

One row per entry of an episode into a stage (`Episode.history`), with how
the entry ended and the outcomes the funnel counts for it, so that a flow's
figures are a GROUP BY over these rows and the audit (`store/figures.py`)
instead of a read of every journey. `insight.visits.visit_facts` computes
them with the counting rules of `insight.figures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["VisitFacts"]


@dataclass(frozen=True, slots=True)
class VisitFacts:
    episode_id: str
    # The visit's place in the episode's history (0 for the stage it started in).
    visit: int
    patient_id: str
    flow_id: str
    flow_version: int
    stage_id: str
    entered_at: datetime
    event_id: str
    # The episode's persona (from the event that opened it) and start.
    persona: str | None
    started_at: datetime
    # moved_on, dropped_off, completed or still_here (`insight.figures` rule 1).
    ending: str
    # The stage entered next, if the episode moved on.
    next_stage_id: str | None
    # Events counted for this visit (rule 2): a no-show, a check-in or completion,
    # an intake request, a reply; hours from a referral here to the booking after it.
    missed: bool = False
    attended: bool = False
    intake_sent: bool = False
    replied: bool = False
    referral_hours: float | None = None
    # Outcomes of the whole episode (holdout comparison, intake completion).
    episode_intake_done: bool = False
    episode_no_show: bool = False
    episode_replied: bool = False
