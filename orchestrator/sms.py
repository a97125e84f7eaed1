"""SMS length in segments: GSM-7 where every character allows it, else UCS-2.

Carriers split a long SMS into segments of 153 GSM-7 characters (160 when it
fits in one) or 67 UCS-2 code units (70 when it fits in one); a character
from the GSM-7 extension table (such as `€` or `[`) takes two septets.
"""

from __future__ import annotations

__all__ = ["encoding", "segments"]

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def encoding(text: str) -> str:
    """`gsm7` when every character is in the GSM 03.38 alphabet, else `ucs2`."""
    return "gsm7" if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in text) else "ucs2"


def segments(text: str) -> int:
    """How many SMS segments `text` is sent as."""
    if not text:
        return 1
    if encoding(text) == "gsm7":
        septets = sum(2 if c in _GSM7_EXTENSION else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)
