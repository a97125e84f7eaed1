"""The Kafka runtime: Faust workers on the patient topics, publishing and topic creation."""

from __future__ import annotations

from .deadletter import DeadLetter, Record
from .handler import BatchHandler, BatchOutcome
from .topics import (
    DEADLETTER,
    EVENT_TOPICS,
    BrokerError,
    TopicPlan,
    bootstrap_servers,
    create_topics,
    topic_for,
)

__all__ = [
    "DEADLETTER",
    "EVENT_TOPICS",
    "BatchHandler",
    "BatchOutcome",
    "BrokerError",
    "DeadLetter",
    "Record",
    "TopicPlan",
    "bootstrap_servers",
    "create_topics",
    "topic_for",
]
