"""Options shared by the commands that touch the store, flows and templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..settings import Settings

__all__ = ["DbOption", "FlowsOption", "TemplatesOption", "settings_with"]

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="store URL (env ORCHESTRATOR_DB, else sqlite:///orchestrator.db)"),
]
FlowsOption = Annotated[Path | None, typer.Option("--flows", help="flows directory")]
TemplatesOption = Annotated[Path | None, typer.Option("--templates", help="templates directory")]


def settings_with(**overrides: object) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings().model_copy(update=given)
