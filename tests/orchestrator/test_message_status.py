"""The message status machine: its rules, checked over every path through it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.message_status import (
    FINAL,
    IN_FLIGHT,
    PENDING,
    SETTLED,
    MessageStatus,
    allowed,
    sources,
)

S = MessageStatus
statuses = st.sampled_from(list(MessageStatus))


def _walk(choices: list[int]) -> list[MessageStatus]:
    """The statuses a message passes through when each step takes one allowed move."""
    path: list[MessageStatus] = []
    current: MessageStatus | None = None
    for choice in choices:
        moves = [s for s in MessageStatus if allowed(current, s)]
        if not moves:
            break
        current = moves[choice % len(moves)]
        path.append(current)
    return path


def test_statuses_keep_the_strings_the_store_and_the_audit_hold() -> None:
    assert [s.value for s in MessageStatus] == [
        "scheduled",
        "claimed",
        "sending",
        "sent",
        "delivered",
        "failed",
        "suppressed",
        "cancelled",
        "expired",
    ]
    assert S.SENT == "sent" and f"{S.CANCELLED}" == "cancelled"


@given(statuses, statuses)
def test_nothing_leaves_a_settled_status(current: MessageStatus, new: MessageStatus) -> None:
    if current in SETTLED:
        assert not allowed(current, new)


@given(statuses)
def test_a_sent_message_moves_only_by_provider_feedback_to_delivered_or_failed(
    new: MessageStatus,
) -> None:
    assert allowed(S.SENT, new) == (new in (S.DELIVERED, S.FAILED))


@given(statuses)
def test_only_a_pending_message_can_be_cancelled(current: MessageStatus) -> None:
    assert allowed(current, S.CANCELLED) == (current in PENDING)


@given(statuses)
def test_a_status_that_stays_is_not_a_move(status: MessageStatus) -> None:
    assert not allowed(status, status)


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=20), max_size=30))
def test_once_sent_a_message_is_never_unsent_cancelled_suppressed_or_expired(
    choices: list[int],
) -> None:
    path = _walk(choices)
    if S.SENT in path:
        after = path[path.index(S.SENT) + 1 :]
        assert set(after) <= {S.DELIVERED, S.FAILED}
        assert len(after) <= 1


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=20), max_size=30))
def test_a_message_is_sent_only_from_a_claim(choices: list[int]) -> None:
    path = _walk(choices)
    for before, status in zip([None, *path], path, strict=False):
        if status is S.SENT:
            assert before in IN_FLIGHT


def test_every_status_is_reachable_and_every_unfinished_one_can_finish() -> None:
    reachable: set[MessageStatus] = set()
    frontier: list[MessageStatus | None] = [None]
    while frontier:
        current = frontier.pop()
        for status in MessageStatus:
            if allowed(current, status) and status not in reachable:
                reachable.add(status)
                frontier.append(status)
    assert reachable == set(MessageStatus)
    for status in set(MessageStatus) - set(FINAL):
        assert any(allowed(status, final) for final in FINAL), status


def test_sources_are_the_statuses_a_move_is_allowed_from() -> None:
    assert sources(S.CANCELLED) == PENDING
    assert sources(S.SENDING) == (S.CLAIMED,)
    assert sources(S.DELIVERED) == (S.SENT,)
    assert sources(S.SENT) == IN_FLIGHT
