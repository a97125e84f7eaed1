"""Dead letters: poison input with its reason and where it was read.

A dead letter is published to `patient.deadletter`, keyed like the input,
and carries the reason, the source topic, partition and offset, and the
input itself (as text when it is UTF-8, else base64), so that it can be
inspected and replayed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

__all__ = ["DeadLetter", "Record"]


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
            body, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return json.dumps(
            {
                "reason": self.reason,
                "topic": self.record.topic,
                "partition": self.record.partition,
                "offset": self.record.offset,
                "encoding": encoding,
                "value": body,
            }
        ).encode()

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
