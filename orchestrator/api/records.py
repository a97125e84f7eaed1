"""What the store holds, read back: a patient's timeline, the audit trail, the sandbox outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from ..event import bound_id
from ..limits import unsafe_text
from ..ports import EpisodeView, MessageView
from .deps import Store
from .params import Instant, StorableText
from .roles import PATIENT_ROLES, require_role

__all__ = ["audit", "outbox", "router", "timeline"]

# Each of these names patients (ids, contact points, bodies): never the marketing role's.
router = APIRouter(dependencies=[Depends(require_role(*PATIENT_ROLES))])


@router.get("/patients/{patient_id}/timeline")
def timeline(patient_id: str, store: Store) -> dict[str, Any]:
    if unsafe_text(patient_id) is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no journey for this patient")
    patient_id = bound_id(patient_id)  # a long id, as the store names it
    episodes = store.episodes(patient_id)
    if not episodes:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no journey for this patient")
    return {
        "patient_id": patient_id,
        "episodes": _jsonable(episodes),
        # In time order: the store lists them by creation, then key (a hash).
        "messages": _jsonable(
            sorted(store.messages(patient_id=patient_id), key=lambda m: (m.due_at, m.key))
        ),
        "audit": [a.as_json() for a in store.audit(patient_id=patient_id)],
    }


@router.get("/audit")
def audit(
    store: Store,
    flow: Annotated[StorableText | None, Query(max_length=100)] = None,
    since: Instant | None = None,
    message_status: Annotated[StorableText | None, Query(alias="status", max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    rows = store.audit(flow=flow, since=since, status=message_status, limit=limit)
    return [a.as_json() for a in rows]


@router.get("/outbox")
def outbox(
    store: Store, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[dict[str, Any]]:
    return [
        {
            "key": o.key,
            "channel": o.channel,
            "to": o.to,
            "subject": o.subject,
            "body": o.body,
            "sent_at": o.sent_at.isoformat(),
        }
        for o in store.outbox(limit)
    ]


def _jsonable(rows: list[EpisodeView] | list[MessageView]) -> list[dict[str, Any]]:
    convert: Callable[[Any], Any] = lambda v: v.isoformat() if isinstance(v, datetime) else v  # noqa: E731
    return [{k: convert(v) for k, v in asdict(row).items()} for row in rows]
