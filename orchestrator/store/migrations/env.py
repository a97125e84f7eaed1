"""Alembic environment: migrations run on the connection `orchestrator db upgrade` passes in."""

from __future__ import annotations

from alembic import context

from orchestrator.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through orchestrator.store.migrate, which passes a connection"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
