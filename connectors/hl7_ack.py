"""HL7 v2 acknowledgements (original mode): MSA AA, or AE / AR with an ERR segment.

The ACK answers in the sender's own separators, swaps sending and receiving
application and facility, and echoes MSH-10 in MSA-2. ERR carries the
location both ways, ERR-1 (v2.3/2.4) and ERR-2..4 (v2.5 on), so that older
and newer engines can read it; its text names segment and field, never a
value from the message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .hl7_message import APPLICATION_ERROR, ERROR_TEXT, Hl7Error, Location

__all__ = ["AckCode", "Envelope", "build_ack", "envelope_of"]

AckCode = Literal["AA", "AE", "AR"]
# MSA-3 (text message) holds at most 80 characters.
_TEXT_MESSAGE = 80


@dataclass(frozen=True, slots=True)
class Envelope:
    """The MSH fields an ACK needs, read even from a message that does not parse."""

    field: str = "|"
    encoding: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"


def envelope_of(text: str) -> Envelope:
    """The MSH of raw text, as far as it can be read (defaults where it cannot).

    Never raises: every NACK, including the one for an unreadable message, is
    built from it.
    """
    start = text.find("MSH")
    if start < 0:
        return Envelope()
    line = text[start:].split("\r", 1)[0].split("\n", 1)[0]
    # The text may run on past a short MSH line ("MSH\rPID|..."): measure the line.
    if len(line) < 4:
        return Envelope()
    sep = line[3]
    if sep.isalnum() or sep.isspace():
        return Envelope()
    fields = line.split(sep)
    fields.insert(1, sep)

    def f(i: int) -> str:
        return fields[i] if i < len(fields) else ""

    encoding = f(2) if 2 <= len(f(2)) <= 5 and sep not in f(2) else "^~\\&"
    component = encoding[0]
    return Envelope(
        field=sep,
        encoding=encoding,
        sending_application=f(3),
        sending_facility=f(4),
        receiving_application=f(5),
        receiving_facility=f(6),
        trigger=f(9).split(component)[1] if component in f(9) else "",
        control_id=f(10).split(component)[0],
        processing_id=f(11) or "P",
        version=f(12).split(component)[0] or "2.5",
    )


def build_ack(
    envelope: Envelope, code: AckCode, now: datetime, error: Hl7Error | None = None
) -> str:
    """The ACK message text, segments ended by `\\r`."""
    s, enc = envelope.field, envelope.encoding
    component = enc[0]
    sub = enc[3] if len(enc) > 3 else "&"
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    trigger = f"ACK{component}{envelope.trigger}{component}ACK" if envelope.trigger else "ACK"
    msh = s.join(
        [
            "MSH",
            enc,
            envelope.receiving_application,
            envelope.receiving_facility,
            envelope.sending_application,
            envelope.sending_facility,
            stamp,
            "",
            trigger,
            uuid.uuid4().hex[:20],
            envelope.processing_id,
            envelope.version,
        ]
    )
    msa = ["MSA", code, envelope.control_id]
    if error is not None:
        msa.append(_escape(f"{error.location}: {error.problem}", s, enc, limit=_TEXT_MESSAGE))
    segments = [msh, s.join(msa)]
    if error is not None:
        segments.append(_err(error, s, component, sub, enc))
    return "\r".join(segments) + "\r"


def _err(error: Hl7Error, s: str, component: str, sub: str, encoding: str) -> str:
    where: Location = error.location
    code = error.code or APPLICATION_ERROR
    text = ERROR_TEXT.get(code, ERROR_TEXT[APPLICATION_ERROR])
    position = [where.segment, str(where.sequence), str(where.field or "")]
    eld = component.join([*position, sub.join([code, text, "HL70357"])])
    erl = component.join(
        [*position, "1" if where.field else "", str(where.component or "") if where.field else ""]
    ).rstrip(component)
    cwe = component.join([code, text, "HL70357"])
    diagnostic = _escape(f"{where}: {error.problem}", s, encoding)
    return s.join(["ERR", eld, erl, cwe, "E", "", "", diagnostic, diagnostic])


def _escape(text: str, field: str, encoding: str, *, limit: int | None = None) -> str:
    """HL7 escapes for the separators a free-text field may hold, within `limit` characters.

    The limit cuts between whole characters and escapes, never inside an escape.
    """
    escape = encoding[2] if len(encoding) > 2 else "\\"
    names = {field: "F", encoding[0]: "S", encoding[1]: "R", escape: "E"}
    if len(encoding) > 3:
        names[encoding[3]] = "T"
    out: list[str] = []
    size = 0
    for ch in text.replace("\r", " ").replace("\n", " "):
        name = names.get(ch)
        piece = f"{escape}{name}{escape}" if name else ch
        if limit is not None and size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)
