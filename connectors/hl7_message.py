"""HL7 v2 messages as segments and fields: normalising, splitting, field access.

Real feeds are untidy: a byte-order mark, `\\n` or `\\r\\n` instead of `\\r`,
trailing blank segments, text that is not UTF-8. `Hl7Message.parse` takes
the raw bytes as they came and yields segments split on the message's own
separators (MSH-1 and MSH-2); fields are split further only when read.

Why not `hl7.parse`: it builds a container for every component of every
field, which costs about 5 ms for an SIU message here, 25 times the budget of
the ingest target. The `hl7` package's tree is the reference the tests hold
this reader to, field by field; its date/time parser reads DTM values.

Every error is an `Hl7Error` that names the segment, its position and the
field (HL7 table 0357 code included), never a value from the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from orchestrator.errors import InputError

__all__ = ["Hl7Error", "Hl7Message", "Location", "Segment", "decode"]

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")

# HL7 table 0357, the codes the ERR segment carries.
SEGMENT_SEQUENCE_ERROR: Final = "100"
REQUIRED_FIELD_MISSING: Final = "101"
DATA_TYPE_ERROR: Final = "102"
TABLE_VALUE_NOT_FOUND: Final = "103"
UNSUPPORTED_MESSAGE_TYPE: Final = "200"
UNSUPPORTED_EVENT_CODE: Final = "201"
UNSUPPORTED_VERSION: Final = "203"
APPLICATION_ERROR: Final = "207"

ERROR_TEXT: Final = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_VERSION: "Unsupported version id",
    APPLICATION_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a message: segment id, its 1-based position among segments of
    that id, and the field (0 for the whole segment), component when known."""

    segment: str
    sequence: int = 1
    field: int = 0
    component: int = 0

    def __str__(self) -> str:
        if not self.field:
            return self.segment
        name = f"{self.segment}-{self.field}"
        if self.component:
            name += f".{self.component}"
        return name if self.sequence == 1 else f"{name} (segment {self.sequence})"


class Hl7Error(InputError):
    """Raised when an HL7 v2 message cannot be read or mapped.

    `location` names segment and field, `code` is from HL7 table 0357, and
    `reject` tells an AR (the message cannot be taken at all: unsupported
    type, no MSH) from an AE (an error in its content).
    """

    def __init__(
        self, location: Location, problem: str, code: str = DATA_TYPE_ERROR, *, reject: bool = False
    ) -> None:
        self.location = location
        self.problem = problem
        self.code = code
        self.reject = reject
        super().__init__(str(location), [problem])


def decode(raw: bytes | str) -> str:
    """The message as text with `\\r` segment ends, without BOM or blank segments.

    UTF-8 is preferred (HL7 v2.8); text that is not UTF-8 is read as
    Windows-1252, the usual other charset of real feeds, so no byte is lost.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
    else:
        text = raw.removeprefix("\ufeff")
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(s for s in text.split("\r") if s.strip())


class Segment:
    """One segment: fields by HL7 number (MSH-1 is the field separator)."""

    __slots__ = ("_fields", "_message", "id", "line", "sequence")

    def __init__(self, message: Hl7Message, segment_id: str, line: str, sequence: int) -> None:
        self._message = message
        self.id = segment_id
        self.line = line
        self.sequence = sequence
        self._fields: list[str] | None = None

    @property
    def fields(self) -> list[str]:
        """The fields, split on first use (most segments of a message are never read)."""
        if self._fields is None:
            fields = self.line.split(self._message.field)
            if self.id == "MSH":
                fields.insert(1, self._message.field)
            fields[0] = self.id
            self._fields = fields
        return self._fields

    def raw(self, field: int) -> str:
        """The field as sent, escapes and all ("" when absent)."""
        return self.fields[field] if field < len(self.fields) else ""

    def repetitions(self, field: int) -> list[str]:
        text = self.raw(field)
        return text.split(self._message.repetition) if text else []

    def get(self, field: int, component: int = 1, sub: int = 1, *, rep: int = 1) -> str:
        """One value, unescaped; "" when any level is absent (optional data)."""
        text = self.raw(field)
        if not text:
            return ""
        if self.id == "MSH" and field <= 2:
            return text
        m = self._message
        if m.repetition in text:
            reps = text.split(m.repetition)
            text = reps[rep - 1] if rep <= len(reps) else ""
        elif rep > 1:
            return ""
        return m.component_value(text, component, sub)

    def location(self, field: int = 0, component: int = 0) -> Location:
        return Location(self.id, self.sequence, field, component)


class Hl7Message:
    """A message split into segments on its own separators."""

    __slots__ = (
        "_built",
        "_by_name",
        "_lines",
        "_names",
        "component",
        "escape",
        "field",
        "repetition",
        "subcomponent",
        "text",
    )

    def __init__(self, text: str) -> None:
        self.text = text
        if not text.startswith("MSH") or len(text) < 8:
            raise Hl7Error(
                Location("MSH"),
                "the message does not start with an MSH segment",
                SEGMENT_SEQUENCE_ERROR,
                reject=True,
            )
        self.field = text[3]
        end = text.find(self.field, 4)
        encoding = text[4:end] if end > 0 else ""
        if len(encoding) < 2 or self.field in encoding or self.field.isalnum():
            raise Hl7Error(
                Location("MSH", 1, 2),
                "the field separator and encoding characters are not readable",
                DATA_TYPE_ERROR,
                reject=True,
            )
        self.component = encoding[0]
        self.repetition = encoding[1]
        self.escape = encoding[2] if len(encoding) > 2 else ""
        self.subcomponent = encoding[3] if len(encoding) > 3 else "&"
        # Fields are split when read: most of a message never is.
        self._lines = text.split("\r")
        sep = self.field
        self._names = [
            line[:3] if line[3:4] == sep else line.partition(sep)[0].strip() for line in self._lines
        ]
        self._by_name: dict[str, list[str]] = {}
        for name, line in zip(self._names, self._lines, strict=True):
            self._by_name.setdefault(name, []).append(line)
        self._built: dict[str, list[Segment]] = {}

    @classmethod
    def parse(cls, raw: bytes | str) -> Hl7Message:
        """Normalise and split one message.

        Raises:
            Hl7Error: it does not start with a readable MSH segment.
        """
        return cls(decode(raw))

    def first(self, segment_id: str) -> Segment | None:
        found = self.all(segment_id)
        return found[0] if found else None

    def all(self, segment_id: str) -> list[Segment]:
        """The segments of one id, in message order."""
        found = self._built.get(segment_id)
        if found is None:
            lines = self._by_name.get(segment_id, ())
            found = [Segment(self, segment_id, line, i) for i, line in enumerate(lines, start=1)]
            self._built[segment_id] = found
        return found

    @property
    def segments(self) -> list[Segment]:
        """Every segment, in message order."""
        counts: dict[str, int] = {}
        out = []
        for name in self._names:
            counts[name] = counts.get(name, 0) + 1
            out.append(self.all(name)[counts[name] - 1])
        return out

    @property
    def msh(self) -> Segment:
        return self.all("MSH")[0]

    def component_value(self, text: str, component: int, sub: int) -> str:
        """A component (and subcomponent) of one repetition, unescaped."""
        if self.component in text:
            parts = text.split(self.component)
            text = parts[component - 1] if component <= len(parts) else ""
        elif component > 1:
            return ""
        if self.subcomponent in text:
            parts = text.split(self.subcomponent)
            text = parts[sub - 1] if sub <= len(parts) else ""
        elif sub > 1:
            return ""
        if self.escape and self.escape in text:
            text = self._unescape(text)
        return text.strip()

    def components(self, text: str) -> list[str]:
        """The components of one repetition (first subcomponents), unescaped."""
        return [self.component_value(part, 1, 1) for part in text.split(self.component)]

    def _unescape(self, text: str) -> str:
        """HL7 escape sequences (chapter 2.7): separators, hex, formatting.

        Not `hl7.util.unescape`: on a malformed sequence it logs the value,
        and a value here may be a patient's.
        """
        esc = self.escape
        names = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": esc,
        }
        out: list[str] = []
        i = 0
        while True:
            start = text.find(esc, i)
            end = text.find(esc, start + 1) if start >= 0 else -1
            if end < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:start])
            sequence = text[start + 1 : end]
            if sequence in names:
                out.append(names[sequence])
            elif sequence[:1] == "X" and _HEX.fullmatch(sequence[1:]):
                raw = bytes.fromhex(sequence[1:])
                try:
                    out.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    out.append(raw.decode("latin-1"))
            elif sequence == ".br":
                out.append("\n")
            # Highlighting (H, N), character sets (C, M) and local (Z) escapes carry no text.
            i = end + 1
