"""Publishing events to the patient topics with kafka-python.

Each JSON line goes, as it is, to the topic of its event type, keyed by the
patient id (so one patient's events keep their order). A line that cannot be
routed (not JSON, no known type, no patient id) is not published: it is
reported with its line number. The worker validates everything else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import JsonError
from ..event import bound_id
from ..limits import read_json, unsafe_text
from .topics import BrokerError, bootstrap_servers, topic_for

__all__ = ["PublishReport", "Publisher", "route"]


# Records whose acknowledgement is awaited before more are sent: a large file
# is not held in memory as one future per line.
_CONFIRM_EVERY = 10_000


@dataclass
class PublishReport:
    published: Counter[str] = field(default_factory=Counter)
    unroutable: list[tuple[int, str]] = field(default_factory=list)


def route(line: str | bytes) -> tuple[str, bytes]:
    """The topic and key of one event line.

    Raises:
        ValueError: naming why the line cannot be routed.
    """
    try:
        data = read_json(line, where="line")
    except JsonError as exc:
        raise ValueError(exc.problems[0]) from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    kind = data.get("type")
    topic = topic_for(kind) if isinstance(kind, str) else None
    if topic is None:
        raise ValueError(f"type: no topic for event type {kind!r}")
    patient = data.get("patient")
    patient_id = patient.get("id") if isinstance(patient, dict) else None
    if not isinstance(patient_id, str) or not patient_id:
        raise ValueError("patient.id: required to key the event")
    unsafe = unsafe_text(patient_id)
    if unsafe is not None:
        raise ValueError(f"patient.id: {unsafe}")
    # Keyed as the store names the patient, so a long id's every form shares a partition.
    return topic, bound_id(patient_id).encode()


class Publisher:
    """A kafka-python producer that waits for every record to be on the broker."""

    def __init__(
        self, url: str, *, linger_ms: int = 20, timeout: float = 30.0, producer: Any = None
    ) -> None:
        """`producer` replaces the kafka-python producer (tests)."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self._timeout = timeout
        self._error: type[Exception] = KafkaError
        if producer is not None:
            self._producer: Any = producer
            return
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers(url),
                client_id="orchestrator-ingest",
                acks="all",
                linger_ms=linger_ms,
                batch_size=256 * 1024,
                # Idempotent producers need broker support some Kafka-compatible
                # brokers lack; the workers' processed-event record dedupes instead.
                enable_idempotence=False,
                retries=5,
                max_in_flight_requests_per_connection=1,
            )
        except KafkaError as exc:
            raise BrokerError(f"broker {url}: cannot connect ({exc.__class__.__name__})") from exc

    def publish(
        self,
        lines: Iterable[tuple[int, bytes]],
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> PublishReport:
        """Publish numbered lines; returns what went where and what could not be routed.

        Raises:
            BrokerError: the broker did not take a record.
        """
        report = PublishReport()
        waiting: list[Any] = []
        try:
            for number, line in lines:
                try:
                    topic, key = route(line)
                except ValueError as exc:
                    report.unroutable.append((number, str(exc)))
                    continue
                waiting.append(self._producer.send(topic, key=key, value=line.rstrip(b"\r\n")))
                report.published[topic] += 1
                if on_sent is not None:
                    on_sent(1)
                if len(waiting) >= _CONFIRM_EVERY:
                    self._confirm(waiting)
            self._confirm(waiting)
        except self._error as exc:
            # From send() too: a full buffer or missing metadata times out there.
            raise BrokerError(f"publish failed: {exc.__class__.__name__}") from exc
        return report

    def _confirm(self, waiting: list[Any]) -> None:
        """Wait until the broker has every record sent so far."""
        self._producer.flush(self._timeout)
        for future in waiting:
            future.get(self._timeout)
        waiting.clear()

    def close(self) -> None:
        self._producer.close(self._timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
