"""Options shared by the commands that touch the store, flows and templates.

Light on purpose: every command module imports it, so `--help` would pay for
anything imported here (the settings and pydantic load when a command runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ..errors import FlowError, StoreError

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "DbOption",
    "FlowsOption",
    "TemplatesOption",
    "count_lines",
    "exit_on_startup_errors",
    "keep_templates_compiled",
    "settings_with",
]

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="store URL (env ORCHESTRATOR_DB, else sqlite:///orchestrator.db)"),
]
FlowsOption = Annotated[Path | None, typer.Option("--flows", help="flows directory")]
TemplatesOption = Annotated[Path | None, typer.Option("--templates", help="templates directory")]


def settings_with(**overrides: object) -> Settings:
    """Settings from the environment, with the flags that were given on top.

    A bad setting is printed, naming it, and the command exits with code 2
    (no traceback; the rejected value is not echoed: it may be a secret).
    """
    from pydantic import ValidationError

    from ..settings import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        # Validated as the environment is (model_copy would take a bad flag as it came).
        return Settings.model_validate({**Settings().model_dump(), **given})
    except ValidationError as exc:
        err = Console(stderr=True)
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            # A rule across settings has no location: its message names them.
            err.print(f"setting {where}: {error['msg']}" if where else error["msg"], markup=False)
        raise typer.Exit(2) from None


def count_lines(file: Path) -> int:
    """The non-blank lines of `file`: a progress bar's total."""
    with file.open("rb") as counting:
        return sum(1 for line in counting if line.strip())


def keep_templates_compiled(settings: Settings, err: Console) -> None:
    """Keep compiled template code on disk for the next run (ORCHESTRATOR_TEMPLATE_CACHE);
    a directory that cannot be found, made or trusted is said so and not used."""
    from ..template_cache import TemplateCacheError
    from ..templates import keep_compiled_in

    directory: Path | str = settings.template_cache or "the default directory"
    try:
        found = settings.template_cache_dir()
        directory = found or directory
        keep_compiled_in(found)
    # RuntimeError: no home directory (HOME unset and no passwd entry, or ~nosuchuser).
    except (TemplateCacheError, RuntimeError, OSError) as exc:
        err.print(
            f"warning: template cache {directory} not used: {exc}", markup=False, highlight=False
        )


@contextmanager
def exit_on_startup_errors(err: Console) -> Iterator[None]:
    """Bad flows or an unusable store: printed, and exit code 2 (no traceback)."""
    try:
        yield
    except FlowError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(2) from None
    except StoreError as exc:
        err.print(f"store: {exc}", markup=False)
        raise typer.Exit(2) from None
