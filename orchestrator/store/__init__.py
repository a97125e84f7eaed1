"""The store: SQLAlchemy tables, migrations and the SQL implementation.

SQLite is the embedded default; PostgreSQL (`postgresql+psycopg://...`) is
production. Row classes stay inside this package; callers get core values.
"""

from .connection import connect
from .imports import ImportHold, ImportHolds
from .inbound import InboundArchive, Settlement
from .invariants import (
    INVARIANTS,
    Invariant,
    InvariantReport,
    Violation,
    check_invariants,
    standard_invariants,
)
from .migrate import head, pending, upgrade
from .queries import FlowTotals, PatientEventView, ProcessedEvent
from .sql import Claim, OutboxEntry, SendingFacts, Sent, SqlStore
from .test_sends import TestSendLedger
from .transactions import Transactions
from .unit import UnitOfWork

__all__ = [
    "INVARIANTS",
    "Claim",
    "FlowTotals",
    "ImportHold",
    "ImportHolds",
    "InboundArchive",
    "Invariant",
    "InvariantReport",
    "OutboxEntry",
    "PatientEventView",
    "ProcessedEvent",
    "SendingFacts",
    "Sent",
    "Settlement",
    "SqlStore",
    "TestSendLedger",
    "Transactions",
    "UnitOfWork",
    "Violation",
    "check_invariants",
    "connect",
    "head",
    "pending",
    "standard_invariants",
    "upgrade",
]
