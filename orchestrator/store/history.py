"""The processed events of a time window, read back from their bodies in chunks.

What a what-if replays (`orchestrator.whatif`). Rows are read by keyset on
(occurred_at, event_id), the index migration 0009 adds, one chunk per short
read transaction: a long window is never held whole, nor a snapshot held
open while the caller simulates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection

from ..errors import InputError
from ..event import Event, EventType
from . import codec
from .tables import ProcessedEventRow

__all__ = ["CHUNK", "fold_order", "read_history"]

CHUNK = 1_000


def read_history(
    read: Callable[[], AbstractContextManager[Connection]],
    since: datetime,
    until: datetime | None,
    types: frozenset[EventType] | None,
    *,
    chunk: int = CHUNK,
) -> Iterator[Event]:
    """The events in [since, until), each type in `types` if given, in fold order."""
    table = ProcessedEventRow
    query = select(table.occurred_at, table.event_id, table.body).where(
        table.occurred_at >= since, table.body.is_not(None)
    )
    if until is not None:
        query = query.where(table.occurred_at < until)
    if types is not None:
        query = query.where(table.type.in_(sorted(t.value for t in types)))
    query = query.order_by(table.occurred_at, table.event_id).limit(chunk)

    def rows() -> Iterator[str]:
        after: tuple[datetime, str] | None = None
        while True:
            page = query
            if after is not None:
                page = page.where(tuple_(table.occurred_at, table.event_id) > tuple_(*after))
            with read() as c:
                found = c.execute(page).all()
            for occurred_at, event_id, body in found:
                assert body is not None  # the query keeps only rows with one
                yield body
                after = (occurred_at, event_id)
            if len(found) < chunk:
                return

    return fold_order(_readable(rows()))


def _readable(bodies: Iterable[str]) -> Iterator[Event]:
    for body in bodies:
        try:
            yield codec.loads_event(body)
        except InputError:
            continue  # a body today's schema refuses: it could not be replayed as it ran


def fold_order(events: Iterable[Event]) -> Iterator[Event]:
    """Events in occurrence order, each run of one instant put in fold order (`Event.sort_key`).

    The store orders equal instants by id; the engine by kind, then id.
    """
    run: list[Event] = []
    for event in events:
        if run and event.occurred_at != run[0].occurred_at:
            yield from sorted(run, key=Event.sort_key)
            run = []
        run.append(event)
    yield from sorted(run, key=Event.sort_key)
