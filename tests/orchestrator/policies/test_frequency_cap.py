"""Frequency caps: at most N messages per channel in a rolling window."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.event import Channel
from orchestrator.flows.model import FrequencyCap
from orchestrator.policies.frequency_cap import within_cap
from tests.builders import at, make_flow

THREE_A_DAY = FrequencyCap(limit=3, per=timedelta(hours=24))


def test_flow_caps_are_read_per_channel() -> None:
    flow = make_flow(frequency_caps={"sms": {"limit": 3, "per": "24h"}})

    assert flow.frequency_caps == {Channel.SMS: THREE_A_DAY}


def test_no_cap_allows_any_number() -> None:
    assert within_cap([at(hours=-h) for h in range(100)], at(), None)


def test_first_message_is_within_the_cap() -> None:
    assert within_cap([], at(), THREE_A_DAY)


def test_third_message_in_a_day_is_allowed() -> None:
    sent = [at(hours=-20), at(hours=-2)]

    assert within_cap(sent, at(), THREE_A_DAY)


def test_fourth_message_in_a_day_is_refused() -> None:
    sent = [at(hours=-20), at(hours=-2), at(minutes=-1)]

    assert not within_cap(sent, at(), THREE_A_DAY)


def test_fourth_message_is_allowed_once_the_oldest_falls_out_of_the_window() -> None:
    sent = [at(hours=-20), at(hours=-2), at(minutes=-1)]

    assert not within_cap(sent, at(hours=3, minutes=59), THREE_A_DAY)
    assert within_cap(sent, at(hours=4), THREE_A_DAY)


def test_sends_older_than_the_window_do_not_count() -> None:
    sent = [at(days=-3), at(days=-2), at(hours=-25), at(hours=-24)]

    assert within_cap(sent, at(), THREE_A_DAY)


def test_order_of_earlier_sends_does_not_matter() -> None:
    sent = [at(minutes=-1), at(hours=-20), at(hours=-2)]

    assert not within_cap(sent, at(), THREE_A_DAY)


def test_a_cap_of_one_a_week_refuses_a_second_within_seven_days() -> None:
    weekly = make_flow(frequency_caps={"email": {"limit": 1, "per": "1w"}}).frequency_caps

    assert not within_cap([at(days=-6)], at(), weekly[Channel.EMAIL])
    assert within_cap([at(days=-7)], at(), weekly[Channel.EMAIL])
