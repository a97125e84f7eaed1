"""The inbound archive on each backend: kept as received, then settled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.memory_store import MemoryStore
from orchestrator.ports import ArchivedMessage
from orchestrator.store import InboundArchive, Settlement, SqlStore
from tests.conftest import EVERY_BACKEND

pytestmark = pytest.mark.backends(*EVERY_BACKEND)

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@dataclass
class Archive:
    """The archive's writes and its reader, whichever store keeps them."""

    keep: Callable[[str, Sequence[bytes], datetime], list[int]]
    settle: Callable[[Sequence[Settlement]], None]
    pending: Callable[[str, int], list[ArchivedMessage]]
    messages: Callable[..., list[dict[str, Any]]]


def archive_of(store: SqlStore | MemoryStore) -> Archive:
    if isinstance(store, MemoryStore):
        # Beside its scheduled messages, so its reader has its own name.
        return Archive(store.keep, store.settle, store.pending, store.inbound_messages)
    archive = InboundArchive(store)
    return Archive(archive.keep, archive.settle, archive.pending, archive.messages)


def test_messages_are_kept_as_received_then_settled(store: SqlStore | MemoryStore) -> None:
    archive = archive_of(store)
    first, second = archive.keep("hl7v2", [b"MSH|one\r", b"MSH|two\r"], NOW)
    assert second > first
    assert [m["status"] for m in archive.messages(status="received")] == ["received", "received"]
    archive.settle(
        [
            Settlement(first, "accepted", "hl7:F:1:S12"),
            Settlement(second, "rejected", None, "PID-3: no patient identifier"),
        ]
    )
    kept = {m["id"]: m for m in archive.messages()}
    assert (kept[first]["status"], kept[first]["event_id"], kept[first]["body"]) == (
        "accepted",
        "hl7:F:1:S12",
        b"MSH|one\r",
    )
    assert (kept[second]["status"], kept[second]["reason"]) == (
        "rejected",
        "PID-3: no patient identifier",
    )
    assert kept[first]["received_at"] == NOW
    assert archive.messages(status="received") == []


def test_a_message_once_settled_is_not_settled_again(store: SqlStore | MemoryStore) -> None:
    archive = archive_of(store)
    (kept,) = archive.keep("hl7v2", [b"MSH|one\r"], NOW)
    archive.settle([Settlement(kept, "accepted", "hl7:F:1:S12")])

    archive.settle([Settlement(kept, "rejected", None, "a late second settlement")])

    (found,) = archive.messages()
    assert (found["status"], found["event_id"], found["reason"]) == (
        "accepted",
        "hl7:F:1:S12",
        None,
    )


def test_pending_are_the_oldest_received_of_a_protocol_prefix(
    store: SqlStore | MemoryStore,
) -> None:
    archive = archive_of(store)
    # A deferred source is longer than the 20 characters `hl7v2` and `fhir` needed.
    protocol = "deferred:feedback:sendgrid"
    first, second, third = archive.keep(protocol, [b"one", b"two", b"three"], NOW)
    archive.keep("hl7v2", [b"MSH|one\r"], NOW)
    (other,) = archive.keep("deferred:feedback:twilio", [b"four"], NOW)
    archive.settle([Settlement(first, "accepted", "evt-1")])

    assert archive.pending("deferred:", 2) == [
        ArchivedMessage(second, protocol, b"two"),
        ArchivedMessage(third, protocol, b"three"),
    ]
    assert [m.id for m in archive.pending("deferred:", 10)] == [second, third, other]
    assert [m.id for m in archive.pending("deferred:feedback:t", 10)] == [other]
    # The prefix is text, not a pattern.
    assert archive.pending("deferred%", 10) == [] and archive.pending("deferred_", 10) == []
