"""The Kafka topics: their names, which event type goes to which, and creating them.

Every event of one patient is keyed by the patient id, so within a topic one
patient's events stay in one partition, in order. Poison input goes to the
dead-letter topic with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import OrchestratorError

__all__ = [
    "DEADLETTER",
    "DISCHARGE",
    "EVENT_TOPICS",
    "INTAKE",
    "MESSAGING",
    "SCHEDULING",
    "BrokerError",
    "TopicPlan",
    "bootstrap_servers",
    "create_topics",
    "topic_for",
]

log = logging.getLogger(__name__)

SCHEDULING = "patient.scheduling"
INTAKE = "patient.intake"
DISCHARGE = "patient.discharge"
MESSAGING = "patient.messaging"
DEADLETTER = "patient.deadletter"
EVENT_TOPICS: tuple[str, ...] = (SCHEDULING, INTAKE, DISCHARGE, MESSAGING)

# By the event type's prefix; `patient.updated` is demographic, so it travels
# with scheduling, where most journeys start.
_BY_TYPE: dict[str, str] = {
    "appointment.": SCHEDULING,
    "referral.": SCHEDULING,
    "patient.updated": SCHEDULING,
    "intake.": INTAKE,
    "patient.admitted": DISCHARGE,
    "patient.discharged": DISCHARGE,
    "message.": MESSAGING,
    "consent.": MESSAGING,
}


class BrokerError(OrchestratorError):
    """The broker URL is malformed, or the broker refused or could not be reached."""


def topic_for(event_type: str) -> str | None:
    """The topic an event of this type goes to, or None for a type nobody routes."""
    for prefix, topic in _BY_TYPE.items():
        if event_type == prefix or (prefix.endswith(".") and event_type.startswith(prefix)):
            return topic
    return None


def bootstrap_servers(url: str) -> list[str]:
    """`kafka://host:port[;host:port...]` (Faust's form) as kafka-python's `host:port` list.

    Raises:
        BrokerError: the URL is not a kafka:// URL with host:port parts.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "kafka" or not rest:
        raise BrokerError(f"broker {url!r}: expected kafka://HOST:PORT")
    servers = []
    for part in rest.replace(",", ";").split(";"):
        host, colon, port = part.strip().rstrip("/").rpartition(":")
        if not colon or not host or not port.isdigit():
            raise BrokerError(f"broker {url!r}: expected kafka://HOST:PORT, got {part!r}")
        servers.append(f"{host}:{port}")
    return servers


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What `create_topics` did: the topics it made and the ones that were there."""

    created: tuple[str, ...]
    existing: tuple[str, ...]


def create_topics(
    url: str,
    *,
    partitions: int,
    replication: int = 1,
    topics: Sequence[str] = (*EVENT_TOPICS, DEADLETTER),
    timeout: float = 30.0,
) -> TopicPlan:
    """Create the topics that do not exist yet (existing ones are left as they are).

    Raises:
        BrokerError: the broker cannot be reached or refuses a topic.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers(url),
            client_id="orchestrator-topics",
            request_timeout_ms=int(timeout * 1000),
        )
    except KafkaError as exc:
        raise BrokerError(f"broker {url}: cannot connect ({exc.__class__.__name__})") from exc
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            admin.create_topics(
                [NewTopic(t, partitions, replication) for t in wanted],
                timeout_ms=int(timeout * 1000),
            )
        log.info("topics.created", extra={"created": wanted})
        return TopicPlan(tuple(wanted), tuple(t for t in topics if t in existing))
    except KafkaError as exc:
        raise BrokerError(f"broker {url}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        admin.close()
