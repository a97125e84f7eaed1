"""SMS segment counting: GSM-7 with its extension table, else UCS-2."""

from __future__ import annotations

import pytest

from orchestrator.sms import encoding, segments


@pytest.mark.parametrize(
    ("length", "expected"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm7_text_is_one_segment_up_to_160_then_153_per_segment(
    length: int, expected: int
) -> None:
    text = "a" * length

    assert encoding(text) == "gsm7"
    assert segments(text) == expected


def test_empty_text_is_still_one_segment() -> None:
    assert segments("") == 1


@pytest.mark.parametrize("char", ["€", "[", "]", "{", "}", "^", "~", "|", "\\"])
def test_extension_characters_count_double(char: str) -> None:
    assert encoding(char) == "gsm7"
    assert segments(char * 80) == 1
    assert segments(char * 81) == 2
    assert segments("a" * 159 + char) == 2
    assert segments("a" * 158 + char) == 1


def test_extension_characters_count_double_across_segments() -> None:
    assert segments("€" * 153) == 2  # 306 septets
    assert segments("€" * 154) == 3  # 308 septets


@pytest.mark.parametrize(
    ("length", "expected"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_one_non_gsm_character_switches_the_whole_text_to_ucs2(length: int, expected: int) -> None:
    text = "á" + "a" * (length - 1)

    assert encoding(text) == "ucs2"
    assert segments(text) == expected


def test_ucs2_counts_code_units_so_an_emoji_takes_two() -> None:
    assert segments("🙂" * 35) == 1
    assert segments("🙂" * 35 + "a") == 2


@pytest.mark.parametrize("char", ["é", "ñ", "¿", "¡", "ü", "à", "Ñ", "É"])
def test_spanish_accents_in_the_gsm_alphabet_stay_gsm7(char: str) -> None:
    text = char + "a" * 159

    assert encoding(text) == "gsm7"
    assert segments(text) == 1


def test_a_spanish_reminder_in_the_gsm_alphabet_stays_gsm7() -> None:
    assert encoding("¿Necesita transporte? Su cita es mañana. Responda SI o NO.") == "gsm7"


def test_one_accent_outside_the_gsm_alphabet_makes_a_spanish_reminder_ucs2() -> None:
    assert encoding("¿Necesita transporte? Su cita es mañana. Responda SÍ o NO.") == "ucs2"
