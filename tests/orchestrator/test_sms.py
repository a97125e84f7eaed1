"""SMS segment counting: GSM-7 with its extension table, else UCS-2; what forced UCS-2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import sms
from orchestrator.sms import SmsAnalysis, analyse, encoding, gsm7_form, normalise, segments


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


# -- why a text is UCS-2, and its GSM-7 form ------------------------------------------

SPANISH = "Su cita está confirmada para el sábado. “Traiga” su tarjeta; ¿Necesita ayuda? Llámenos: aquí, sí o no."


def test_the_characters_that_force_ucs2_are_named_with_their_positions() -> None:
    found = analyse(SPANISH)

    assert found.encoding == "ucs2"
    assert [(f.character, f.position) for f in found.forcing] == [
        (c, i) for i, c in enumerate(SPANISH) if c in "áíóú“”"
    ]
    assert {f.character for f in found.forcing} == {"á", "í", "“", "”"}
    assert {f.character: f.replacement for f in found.forcing} == {
        "á": "a",
        "í": "i",
        "“": '"',
        "”": '"',
    }
    assert found.forcing[0].name == "LATIN SMALL LETTER A WITH ACUTE"


def test_spanish_letters_in_the_gsm_alphabet_are_kept_in_the_suggestion() -> None:
    found = analyse(SPANISH)

    assert found.suggestion == (
        'Su cita esta confirmada para el sabado. "Traiga" su tarjeta; ¿Necesita ayuda? '
        "Llamenos: aqui, si o no."
    )
    assert encoding(found.suggestion) == "gsm7"
    assert found.suggestion_segments == segments(found.suggestion) == 1
    assert found.suggestion_segments <= found.segments


def test_an_over_long_spanish_sms_fits_in_fewer_segments_in_its_gsm7_form() -> None:
    text = "Recordatorio: su cita es el sábado a las 10:30. " * 3  # 147 characters, UCS-2

    found = analyse(text)

    assert (found.encoding, found.segments) == ("ucs2", 3)
    assert found.suggestion_segments == 1
    assert found.describe() == (
        "UCS-2 because of 'á' x3; without them (GSM-7: 'á'->'a') it would take 1 segment(s)"
    )


@pytest.mark.parametrize(
    ("char", "form"),
    [
        ("Á", "A"),
        ("ó", "o"),
        ("Ú", "U"),
        ("ç", "c"),
        ("‘", "'"),
        ("—", "-"),
        ("…", "..."),
        ("\u00a0", " "),
        ("\u202f", " "),
        ("ﬁ", "fi"),
    ],
)
def test_characters_outside_gsm7_have_a_plain_form(char: str, form: str) -> None:
    assert gsm7_form(char) == form


def test_a_text_with_a_character_without_a_gsm7_form_has_no_suggestion() -> None:
    found = analyse("Gracias 🙂 está")

    assert [(f.character, f.replacement) for f in found.forcing] == [("🙂", None), ("á", "a")]
    assert found.suggestion is None
    assert found.describe() == "UCS-2 because of '🙂', 'á'"


def test_gsm7_text_has_nothing_forcing_and_no_suggestion() -> None:
    found = analyse("¿Necesita transporte? Su cita es mañana: €5 [a]")

    assert found == SmsAnalysis("gsm7", 1)
    assert found.describe() == "GSM-7"


@given(st.text(max_size=400))
def test_analysis_agrees_with_the_counter(text: str) -> None:
    found = analyse(text)

    assert found.encoding == encoding(text)
    assert found.segments == segments(text)
    assert (found.encoding == "gsm7") == (found.forcing == ())
    assert all(text[f.position] == f.character for f in found.forcing)


@given(st.text(max_size=400))
def test_the_suggestion_is_gsm7_whenever_every_character_has_a_form(text: str) -> None:
    found = analyse(text)
    mapped = all(gsm7_form(c) is not None for c in text)

    if found.encoding == "ucs2" and mapped:
        assert found.suggestion is not None
        assert encoding(found.suggestion) == "gsm7"
        assert found.suggestion_segments == segments(found.suggestion)
    else:
        assert found.suggestion is None


@pytest.mark.parametrize(
    ("typography", "plain"),
    [
        ("10:30\u202fAM", "10:30 AM"),
        ("Main\u00a0Campus", "Main Campus"),
        ("\u201cBldg B\u201d", '"Bldg B"'),
        ("it\u2019s", "it's"),
        ("\u00absala\u00bb", '"sala"'),
        ("9\u201310", "9-10"),
        ("ahora \u2014 o", "ahora - o"),
        ("espere\u2026", "espere..."),
    ],
)
def test_normalise_writes_typography_in_gsm7(typography: str, plain: str) -> None:
    assert encoding(typography) == "ucs2"

    assert normalise(typography) == plain
    assert encoding(plain) == "gsm7"


def test_normalise_keeps_every_letter_even_those_outside_gsm7() -> None:
    # Dropping an accent changes the word: that stays the template author's choice.
    text = "¿Cuándo? Sáb, miércoles: información, ñandú, ü. 🙂"

    assert normalise(text) == text


def _segments_by_character(text: str) -> int:
    """The counting rule written character by character (what `segments` once was)."""
    if not text:
        return 1
    if all(c in sms._GSM7 for c in text):
        septets = sum(2 if c in sms._GSM7_EXTENSION else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


@given(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(sorted(sms._GSM7_BASIC)),
            st.sampled_from(sorted(sms._GSM7_EXTENSION)),
            st.characters(exclude_categories=("Cs",)),  # no lone surrogate: no SMS has one
        ),
        max_size=700,
    )
)
def test_segments_count_as_the_character_by_character_rule(text: str) -> None:
    assert segments(text) == _segments_by_character(text)
    assert analyse(text).segments == _segments_by_character(text)
