"""Journey insight: measured funnel and message figures, the journey-map worksheet,
what-if diffs of two flow versions, and the small-count rule for aggregate pages."""

from typing import TYPE_CHECKING

from ..lazy import exports

# Loaded now (it is light): `compare` is both a name and a submodule, and the
# import system would bind the submodule over a name exported lazily.
from .compare import Change, Comparison, compare

if TYPE_CHECKING:
    from .figures import (
        DailySends,
        FigureFilter,
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
        shown_below,
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
    "FigureFilter",
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
    "shown_below",
    "shown_group",
    "shown_rate",
    "to_csv",
    "to_markdown",
]

# Imported on first use (PEP 562): the settings read `privacy.SMALL`, and a
# command that reads no figures (`flows validate`) loads none of the rest.
_HOME = {
    "CSV_COLUMNS": ".worksheet",
    "DailySends": ".figures",
    "FigureFilter": ".figures",
    "FlowFigures": ".figures",
    "GroupOutcomes": ".figures",
    "HIDDEN": ".privacy",
    "HoldoutFigures": ".figures",
    "Hours": ".figures",
    "MessageFigures": ".figures",
    "PatientEvent": ".figures",
    "Ratio": ".figures",
    "SMALL": ".privacy",
    "StageFigures": ".figures",
    "complementary": ".privacy",
    "episode_personas": ".figures",
    "flow_figures": ".figures",
    "hidden": ".privacy",
    "mermaid": ".worksheet",
    "rate_hidden": ".privacy",
    "read_csv": ".worksheet",
    "shown": ".privacy",
    "shown_below": ".privacy",
    "shown_group": ".privacy",
    "shown_rate": ".privacy",
    "to_csv": ".worksheet",
    "to_markdown": ".worksheet",
}

__getattr__, __dir__ = exports(__name__, _HOME)
