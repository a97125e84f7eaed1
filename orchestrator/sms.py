"""SMS length in segments: GSM-7 where every character allows it, else UCS-2.

Carriers split a long SMS into segments of 153 GSM-7 characters (160 when it
fits in one) or 67 UCS-2 code units (70 when it fits in one); a character
from the GSM-7 extension table (such as `€` or `[`) takes two septets.

`analyse` says why a text is UCS-2: the characters outside the GSM 03.38
alphabet, where they are, and the GSM-7 form of the text when every one of
them has a plain equivalent (`á` -> `a`, `“` -> `"`). Spanish keeps `é ñ ü ¿ ¡`,
which GSM-7 has, and loses only the accents it lacks (`á í ó ú`).

`normalise` is the filter every rendered SMS body passes through: it writes
typography that means the same in GSM-7 (Babel's narrow no-break space in
"10:30 AM", curly quotes, dashes, the ellipsis) in its plain form, so none of
it silently halves a segment. It leaves letters alone: dropping an accent
changes the word, so that is the template author's choice.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Encoding",
    "ForcingCharacter",
    "SmsAnalysis",
    "analyse",
    "encoding",
    "gsm7_form",
    "normalise",
    "segments",
]

Encoding = Literal["gsm7", "ucs2"]

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_GSM7 = _GSM7_BASIC | _GSM7_EXTENSION

# Typography that word processors (and Babel) put in text, which has no
# decomposition to a GSM-7 character. Accented letters are found by Unicode
# decomposition instead of being listed.
_PUNCTUATION = {
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’
    "\u201a": "'",  # ‚
    "\u201b": "'",  # ‛
    "\u2032": "'",  # ′
    "\u00b4": "'",  # ´
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # …
    "\u00a0": " ",  # no-break space
    "\u202f": " ",  # narrow no-break space (Babel's English times)
    "\u2009": " ",  # thin space
    "\u2022": "-",  # •
    "\t": " ",
}


_TYPOGRAPHY = str.maketrans(_PUNCTUATION)


def normalise(text: str) -> str:
    """`text` with its typography (spaces, quotes, dashes, ellipsis) in GSM-7; letters kept."""
    return text.translate(_TYPOGRAPHY)


def encoding(text: str) -> Encoding:
    """`gsm7` when every character is in the GSM 03.38 alphabet, else `ucs2`."""
    return "gsm7" if _GSM7.issuperset(text) else "ucs2"


def segments(text: str) -> int:
    """How many SMS segments `text` is sent as."""
    if not text:
        return 1
    if encoding(text) == "gsm7":
        # An extension character takes two septets (escape, then the character).
        septets = len(text) + sum(text.count(c) for c in _GSM7_EXTENSION)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


@dataclass(frozen=True, slots=True)
class ForcingCharacter:
    """A character outside GSM-7, where it is (0-based, in characters), and its GSM-7 form."""

    character: str
    position: int
    name: str
    replacement: str | None


@dataclass(frozen=True, slots=True)
class SmsAnalysis:
    """What an SMS costs and why: its encoding, segments and the characters that forced UCS-2.

    `suggestion` is the text with every forcing character replaced by its
    GSM-7 form; None when the text is GSM-7 already or some character has none.
    """

    encoding: Encoding
    segments: int
    forcing: tuple[ForcingCharacter, ...] = ()
    suggestion: str | None = None
    suggestion_segments: int | None = None

    def describe(self) -> str:
        """The forcing characters in words, for a check's message: "UCS-2 because of 'á' x2, ..."."""
        if not self.forcing:
            return "GSM-7"
        counts: dict[str, int] = {}
        for found in self.forcing:
            counts[found.character] = counts.get(found.character, 0) + 1
        listed = ", ".join(f"{_shown(c)}" + (f" x{n}" if n > 1 else "") for c, n in counts.items())
        text = f"UCS-2 because of {listed}"
        if self.suggestion is not None:
            text += (
                f"; without them (GSM-7: {_replacements(self.forcing)}) it would take "
                f"{self.suggestion_segments} segment(s)"
            )
        return text


def analyse(text: str) -> SmsAnalysis:
    """The encoding and segments of `text`, what forced UCS-2, and a GSM-7 form if one exists."""
    if _GSM7.issuperset(text):  # most messages: no character to look at one by one
        return SmsAnalysis("gsm7", segments(text))
    forcing = tuple(
        ForcingCharacter(c, i, unicodedata.name(c, f"U+{ord(c):04X}"), gsm7_form(c))
        for i, c in enumerate(text)
        if c not in _GSM7
    )
    if not forcing:
        return SmsAnalysis("gsm7", segments(text))
    suggestion: str | None = None
    if all(f.replacement is not None for f in forcing):
        suggestion = "".join(c if c in _GSM7 else gsm7_form(c) or "" for c in text)
    return SmsAnalysis(
        "ucs2",
        segments(text),
        forcing,
        suggestion,
        segments(suggestion) if suggestion is not None else None,
    )


def gsm7_form(character: str) -> str | None:
    """`character` written in GSM-7: itself, a plain equivalent, or None when it has none."""
    if character in _GSM7:
        return character
    if character in _PUNCTUATION:
        return _PUNCTUATION[character]
    # "á" is "a" plus a combining acute; "ﬁ" is "fi" by compatibility.
    decomposed = unicodedata.normalize("NFKD", character)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    if plain and all(c in _GSM7 for c in plain):
        return plain
    return None


def _shown(character: str) -> str:
    return (
        repr(character)
        if character.isprintable() and character != " "
        else f"U+{ord(character):04X}"
    )


def _replacements(forcing: tuple[ForcingCharacter, ...]) -> str:
    pairs = dict.fromkeys(f"{_shown(f.character)}->{f.replacement!r}" for f in forcing)
    return ", ".join(pairs)
