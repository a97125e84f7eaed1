"""`bulk._arrays` column by column gives what value-by-value binding gave.

The reference below is the former implementation: each value through
`_value`, its column type's bind processor and its conversion to the column's
Python type, one call per value. The fast path skips what would change
nothing; the arrays (or the error) must be the same for any rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from orchestrator.store import bulk
from orchestrator.store.tables import Base

DIALECT = postgresql.psycopg.dialect()  # type: ignore[attr-defined]


def _simple(table: Table) -> bool:
    try:
        bulk._columns(DIALECT, table, tuple(c.name for c in table.columns))
    except NotImplementedError:
        return False
    return True


TABLES = [t for t in Base.metadata.sorted_tables if _simple(t)]


def reference(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {}
    for n, name in enumerate(columns):
        column = table.c[name]
        default = bulk._default(column)
        process = column.type._cached_bind_processor(dialect)
        convert = bulk._CONVERSIONS.get(bulk._python_type(column.type))
        values = [bulk._value(row, name, default, i) for i, row in enumerate(rows)]
        if process is not None:
            values = [process(v) for v in values]
        if convert is not None:
            values = [v if v is None else convert(v) for v in values]
        arrays[f"c{n}"] = values
    return arrays


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), None])
_TIMES = st.builds(
    lambda at, zone: at.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    _ZONES,
)
_NUMBERS = st.one_of(
    st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.booleans(), st.sampled_from([0, 1])
)
_ANY = st.one_of(st.none(), _NUMBERS, st.text(max_size=5), _TIMES)


def _values(table: Table, name: str) -> st.SearchStrategy[Any]:
    kind = bulk._python_type(table.c[name].type)
    if kind is datetime:
        typed: st.SearchStrategy[Any] = _TIMES
    elif kind in (int, float, bool):
        typed = _NUMBERS
    elif kind is str:
        typed = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
    else:
        typed = _ANY
    # Now and then a value of another type, as a caller's mistake would give.
    return st.one_of(st.none(), typed, typed, typed, _ANY)


@st.composite
def table_rows(draw: st.DrawFn) -> tuple[Table, tuple[str, ...], list[dict[str, Any]]]:
    table = draw(st.sampled_from(TABLES))
    names = [c.name for c in table.columns]
    columns = tuple(draw(st.lists(st.sampled_from(names), min_size=1, unique=True)))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        kept = draw(st.lists(st.sampled_from(columns), unique=True, min_size=len(columns) - 1))
        rows.append({name: draw(_values(table, name)) for name in columns if name in kept})
    return table, bulk._with_defaults(table, columns), rows


def _outcome(build: Any, *args: Any) -> Any:
    try:
        return ("ok", build(*args))
    except Exception as exc:  # noqa: BLE001 - compared: the same error either way
        return ("error", type(exc))


def _same(a: Any, b: Any) -> bool:
    # NaN is the one value unequal to itself; compare it by identity of kind.
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return (
        type(a) is type(b) and a == b and getattr(a, "tzinfo", None) == getattr(b, "tzinfo", None)
    )


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_each_simple_table_is_covered(table: Table) -> None:
    assert bulk._columns(DIALECT, table, tuple(c.name for c in table.columns))


@settings(max_examples=400, deadline=None)
@given(table_rows())
def test_the_arrays_are_those_value_by_value_binding_gives(
    case: tuple[Table, tuple[str, ...], list[dict[str, Any]]],
) -> None:
    table, columns, rows = case
    fast = _outcome(bulk._arrays, DIALECT, table, columns, rows)
    slow = _outcome(reference, DIALECT, table, columns, rows)
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        return
    assert fast[1].keys() == slow[1].keys()
    for name in fast[1]:
        got, expected = fast[1][name], slow[1][name]
        assert len(got) == len(expected)
        assert all(_same(a, b) for a, b in zip(got, expected, strict=True)), (name, got, expected)
