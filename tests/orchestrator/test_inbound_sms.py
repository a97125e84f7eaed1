"""Inbound SMS keywords: carrier opt-out and opt-in words, HELP, and flow replies."""

from __future__ import annotations

import pytest

from orchestrator.inbound_sms import HELP, OPT_IN, OPT_OUT, Inbound, classify


@pytest.mark.parametrize("word", sorted(OPT_OUT))
def test_every_carrier_opt_out_word_opts_out_in_any_case(word: str) -> None:
    assert classify(word) == Inbound("opt_out")
    assert classify(f"  {word.lower()}. ") == Inbound("opt_out")


@pytest.mark.parametrize("word", sorted(OPT_IN))
def test_every_opt_in_word_opts_in(word: str) -> None:
    assert classify(word.capitalize()) == Inbound("opt_in")


def test_help_words_ask_for_help() -> None:
    assert {classify(w) for w in HELP} == {Inbound("help")}


@pytest.mark.parametrize(
    ("body", "reply"),
    [("C", "confirm"), ("confirm", "confirm"), ("r", "reschedule"), ("Reschedule!", "reschedule")],
)
def test_offered_replies_keep_their_meaning(body: str, reply: str) -> None:
    assert classify(body) == Inbound("reply", reply)


def test_a_keyword_inside_a_sentence_is_only_a_reply() -> None:
    assert classify("please stop calling me at work") == Inbound("reply", "other")
