"""`among`: a column's IN over a list bound at execution, one array parameter on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.dialects import postgresql

from orchestrator.store.among import among

pytestmark = pytest.mark.backends("sqlite", "postgresql")

ROWS = Table("among_rows", MetaData(), Column("id", String(40)), Column("n", Integer))
QUERY = select(ROWS.c.n).where(among(ROWS.c.id, "ids")).order_by(ROWS.c.n)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = create_engine(store_url)
    ROWS.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(ROWS.insert(), [{"id": f"k-{n}", "n": n} for n in range(600)])
    yield engine
    ROWS.metadata.drop_all(engine)
    engine.dispose()


@pytest.mark.parametrize(
    "ids", [[], ["k-3"], ["k-1", "k-599", "k-1", "none"], [f"k-{n}" for n in range(600)]]
)
def test_among_finds_the_rows_whose_value_is_listed(engine: Engine, ids: list[str]) -> None:
    with engine.connect() as c:
        found = list(c.execute(QUERY, {"ids": ids}).scalars())
    assert found == sorted({int(i[2:]) for i in ids if i != "none"})


def test_on_postgresql_the_list_is_one_parameter_whatever_its_length() -> None:
    # psycopg parses a long query with many placeholders in Python at each
    # execution; one array keeps the text short and the same.
    compiled = QUERY.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[attr-defined]
    assert "ANY" in str(compiled)
    assert list(compiled.params) == ["ids"]
    assert not compiled.positiontup and "POSTCOMPILE" not in str(compiled)


@pytest.mark.parametrize(
    "name",
    [
        "_PROCESSED",
        "_JOURNEYS",
        "_KNOWN_PATIENTS",
        "_LOCKED_STATUSES",
        "_EVENT_TIMES",
        "_DELETE_VISITS",
        "_CONSENT_TIMES",
    ],
)
def test_a_batchs_reads_by_id_bind_their_ids_as_one_array_on_postgresql(name: str) -> None:
    from orchestrator.store import unit

    statement = getattr(unit, name)
    compiled = statement.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[attr-defined]
    assert "POSTCOMPILE" not in str(compiled) and "ANY" in str(compiled)
