"""Journey insight: measured funnel and message figures, the journey-map worksheet,
what-if diffs of two flow versions, and the small-count rule for aggregate pages."""

from .compare import Change, Comparison, compare
from .figures import (
    DailySends,
    FlowFigures,
    GroupOutcomes,
    HoldoutFigures,
    Hours,
    MessageFigures,
    PatientEvent,
    Ratio,
    StageFigures,
    episode_personas,
    flow_figures,
)
from .privacy import (
    HIDDEN,
    SMALL,
    complementary,
    hidden,
    rate_hidden,
    shown,
    shown_group,
    shown_rate,
)
from .worksheet import CSV_COLUMNS, mermaid, read_csv, to_csv, to_markdown

__all__ = [
    "CSV_COLUMNS",
    "HIDDEN",
    "SMALL",
    "Change",
    "Comparison",
    "DailySends",
    "FlowFigures",
    "GroupOutcomes",
    "HoldoutFigures",
    "Hours",
    "MessageFigures",
    "PatientEvent",
    "Ratio",
    "StageFigures",
    "compare",
    "complementary",
    "episode_personas",
    "flow_figures",
    "hidden",
    "mermaid",
    "rate_hidden",
    "read_csv",
    "shown",
    "shown_group",
    "shown_rate",
    "to_csv",
    "to_markdown",
]
