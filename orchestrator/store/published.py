"""Published flow versions and the drafts edited in the console.

A published version is a `flow_versions` row (`FlowVersionLog` reads the
ones the registry runs) with what the console adds: the YAML as written, the
templates it sends (read before the files), who published it and the diff
against the version it replaced. It is never updated, but for one thing: a
version that read its templates from the files (one imported from a file) is
given a snapshot of them when a version published in the console replaces
it, once, so that exporting the new version's templates to the files never
changes what it sends. Publishing again is a new version, and two publishers
racing for one number get one row and one `VersionTaken`. A draft is one row per flow, overwritten as it is edited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import StoreError
from .tables import FlowDraftRow, FlowVersionRow
from .transactions import Transactions

__all__ = ["Draft", "Published", "PublishedVersion", "VersionTaken"]


class VersionTaken(StoreError):
    """Another publisher recorded this version of the flow first."""


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    flow_id: str
    version: int
    published_by: str
    published_at: datetime
    source: str
    # The YAML as published; None for a version imported from a file before 0012.
    text: str | None
    templates: Mapping[str, str]
    diff: str | None


@dataclass(frozen=True, slots=True)
class Draft:
    flow_id: str
    text: str
    templates: Mapping[str, str]
    updated_by: str
    updated_at: datetime


class Published:
    """The published versions and drafts, over the store's shared `Transactions`."""

    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    def newest(self) -> dict[str, int]:
        """Each flow's newest recorded version: the cheap question a process asks each tick."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(FlowVersionRow.flow_id, func.max(FlowVersionRow.version)).group_by(
                    FlowVersionRow.flow_id
                )
            )
            return {flow_id: version for flow_id, version in rows}

    def templates(self) -> dict[tuple[str, int], dict[str, str]]:
        """The stored templates of every version that has them."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(
                    FlowVersionRow.flow_id, FlowVersionRow.version, FlowVersionRow.templates
                ).where(FlowVersionRow.templates.is_not(None))
            )
            return {(f, v): json.loads(t) for f, v, t in rows if t is not None}

    def history(self, flow_id: str) -> list[PublishedVersion]:
        """Every version of the flow, newest first."""
        with self.transactions.read() as c:
            rows = c.execute(
                select(*_VERSION_COLUMNS)
                .where(FlowVersionRow.flow_id == flow_id)
                .order_by(FlowVersionRow.version.desc())
            )
            return [_published(*r) for r in rows]

    def version(self, flow_id: str, version: int) -> PublishedVersion | None:
        with self.transactions.read() as c:
            row = c.execute(
                select(*_VERSION_COLUMNS).where(
                    FlowVersionRow.flow_id == flow_id, FlowVersionRow.version == version
                )
            ).one_or_none()
            return _published(*row) if row is not None else None

    def publish(
        self,
        flow_id: str,
        version: int,
        source: str,
        text: str,
        templates: Mapping[str, str],
        published_by: str,
        diff: str,
        now: datetime,
        draft: Draft | None = None,
        kept: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        """Record a new version and drop `draft`, in one transaction.

        `kept` gives older versions of the flow the templates they send (version
        -> name -> text): each that has none stored keeps these from now on.

        The draft is dropped only if the row still holds what `draft` read: an
        edit saved since is someone's work, kept. Without `draft` (a rollback),
        the flow's draft is left alone.

        Raises:
            VersionTaken: the version is already recorded.
        """
        try:
            with self.transactions.write() as c:
                c.execute(
                    insert(FlowVersionRow).values(
                        flow_id=flow_id,
                        version=version,
                        digest=hashlib.sha256(source.encode()).hexdigest(),
                        source=source,
                        first_seen_at=now,
                        published_by=published_by,
                        text=text,
                        templates=_templates_json(templates),
                        diff=diff,
                    )
                )
                for older, texts in sorted((kept or {}).items()):
                    c.execute(
                        update(FlowVersionRow)
                        .where(
                            FlowVersionRow.flow_id == flow_id,
                            FlowVersionRow.version == older,
                            FlowVersionRow.templates.is_(None),
                        )
                        .values(templates=_templates_json(texts))
                    )
                if draft is not None:
                    c.execute(
                        delete(FlowDraftRow).where(
                            FlowDraftRow.flow_id == flow_id,
                            FlowDraftRow.text == draft.text,
                            FlowDraftRow.templates == _templates_json(draft.templates),
                        )
                    )
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise VersionTaken(f"version {version} of {flow_id} is already published") from exc
            raise

    def draft(self, flow_id: str) -> Draft | None:
        with self.transactions.read() as c:
            row = c.execute(
                select(
                    FlowDraftRow.text,
                    FlowDraftRow.templates,
                    FlowDraftRow.updated_by,
                    FlowDraftRow.updated_at,
                ).where(FlowDraftRow.flow_id == flow_id)
            ).one_or_none()
            if row is None:
                return None
            text, templates, by, at = row
            return Draft(flow_id, text, json.loads(templates), by, at)

    def save_draft(
        self, flow_id: str, text: str, templates: Mapping[str, str], by: str, now: datetime
    ) -> None:
        values = {
            "text": text,
            "templates": _templates_json(templates),
            "updated_by": by,
            "updated_at": now,
        }
        with self.transactions.write() as c:
            changed = c.execute(
                update(FlowDraftRow).where(FlowDraftRow.flow_id == flow_id).values(**values)
            ).rowcount
            if not changed:
                c.execute(insert(FlowDraftRow).values(flow_id=flow_id, **values))

    def drop_draft(self, flow_id: str) -> None:
        with self.transactions.write() as c:
            c.execute(delete(FlowDraftRow).where(FlowDraftRow.flow_id == flow_id))


def _templates_json(templates: Mapping[str, str]) -> str:
    # One spelling of a set of templates, so that a draft's can be compared in SQL.
    return json.dumps(dict(templates), sort_keys=True)


_VERSION_COLUMNS = (
    FlowVersionRow.flow_id,
    FlowVersionRow.version,
    FlowVersionRow.published_by,
    FlowVersionRow.first_seen_at,
    FlowVersionRow.source,
    FlowVersionRow.text,
    FlowVersionRow.templates,
    FlowVersionRow.diff,
)


def _published(
    flow_id: str,
    version: int,
    by: str,
    at: datetime,
    source: str,
    text: str | None,
    templates: str | None,
    diff: str | None,
) -> PublishedVersion:
    stored = json.loads(templates) if templates else {}
    return PublishedVersion(flow_id, version, by, at, source, text, stored, diff)
