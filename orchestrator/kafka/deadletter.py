"""Dead letters: poison input with its reason and where it was read.

A dead letter is published to `patient.deadletter`, keyed like the input,
and carries the reason, the source topic, partition and offset, and the
input itself (as text when it is UTF-8, else base64), so that it can be
inspected and replayed. A large input is cut to its first `KEPT` characters
(or bytes), with its length and SHA-256: the broker refuses a message of
about a megabyte, and a dead letter that cannot be published would stop its
partition for good. The whole input stays on its own topic at its offset.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

__all__ = ["KEPT", "DeadLetter", "Record"]

KEPT = 128 * 1024
_REASON_KEPT = 2000


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, as the handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str

    def value(self) -> bytes:
        """The dead-letter message body (JSON)."""
        raw = self.record.value or b""
        try:
            text = raw.decode("utf-8")
            body, encoding, cut = text[:KEPT], "utf-8", len(text) > KEPT
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(raw[:KEPT]).decode("ascii"), "base64"
            cut = len(raw) > KEPT
        letter: dict[str, object] = {
            "reason": self.reason[:_REASON_KEPT],
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "encoding": encoding,
            "value": body,
        }
        if cut:
            letter |= {
                "truncated": True,
                "length": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            }
        return json.dumps(letter, ensure_ascii=False).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        """The same facts as Kafka headers, for consumers that route on them."""
        return [
            ("reason", self.reason.encode()[:1000]),
            ("source-topic", self.record.topic.encode()),
            ("source-partition", str(self.record.partition).encode()),
            ("source-offset", str(self.record.offset).encode()),
        ]

    def where(self) -> str:
        return f"{self.record.topic}[{self.record.partition}]@{self.record.offset}"
