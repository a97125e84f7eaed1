"""The store: SQLAlchemy tables, migrations and the SQL implementation.

SQLite is the embedded default; PostgreSQL (`postgresql+psycopg://...`) is
production. Row classes stay inside this package; callers get core values.
"""

from .migrate import head, pending, upgrade
from .sql import AuditEntry, Claim, OutboxEntry, SqlStore, UnitOfWork, audit_entry, connect

__all__ = [
    "AuditEntry",
    "Claim",
    "OutboxEntry",
    "SqlStore",
    "UnitOfWork",
    "audit_entry",
    "connect",
    "head",
    "pending",
    "upgrade",
]
