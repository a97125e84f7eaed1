"""The store a command reads, opened once for it: missing schema and driver errors end it with why.

Imported only by the commands that read a store, so that the others start
without a database driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from ..errors import StoreError
from ..store import SqlStore, connect, pending

__all__ = ["opened_store"]


@contextmanager
def opened_store(url: str, err: Console) -> Iterator[SqlStore]:
    """The migrated store at `url` for the block, its connections closed after.

    A store that cannot be reached, or one whose schema is missing or old,
    ends the command with exit status 1 and says why on `err`; so does a
    `StoreError` raised in the block.
    """
    try:
        engine = connect(url)
        try:
            if pending(engine):
                err.print(
                    "the store has no schema yet (or an old one): run `orchestrator db upgrade`"
                )
                raise typer.Exit(1)
            yield SqlStore(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        err.print(f"store: {exc}", markup=False)
        raise typer.Exit(1) from None
