"""Many rows of one table in one statement: the unit of work's writes, one per table.

`insert_rows` and `upsert` take a batch's rows of one table. On PostgreSQL
they are one statement whatever their number: each column travels as one
array parameter and `unnest` turns the arrays back into rows, so the
statement's text is the same for ten rows or a thousand (psycopg prepares
it once), the server plans it once and runs its triggers once per
statement. An executemany, which psycopg sends as one statement per row in
a pipeline, costs a round of parameter handling and an executor start per
row; a VALUES list of a thousand rows costs psycopg a parse of the query's
thousands of placeholders each time. On SQLite the driver's executemany
runs in-process and stays.

As an ordinary insert: each value goes through its column type's bind
processing (a `Stamp`'s UTC, a `Reason`'s cut), a column the rows leave out
takes its Python-side default (`attempts` 0), and an error there (a naive
time, a value missing) is a `StatementError`. Each column's values are then
made its one Python type (an int in a float column a float, a bool in an
integer one an int): psycopg sends a list of one type only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, String, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import InvalidRequestError, StatementError
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from .tables import Reason, Stamp

__all__ = ["insert_rows", "upsert"]


def insert_rows(connection: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert the rows (each with the same columns) in one statement on PostgreSQL."""
    if not rows:
        return
    columns = tuple(rows[0])
    if connection.dialect.name != "postgresql":
        connection.execute(_insert(table), list(rows))
        return
    _execute(connection, table, _with_defaults(table, columns), (), (), rows)


def upsert(
    connection: Connection, table: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """Insert the rows, replacing those whose primary key exists; of two rows with one key,
    the later wins, as it would row by row (PostgreSQL refuses to update a row twice
    in one statement)."""
    if not rows:
        return
    rows = list({tuple(row[k] for k in keys): row for row in rows}.values())
    columns = tuple(rows[0])
    updated = tuple(c for c in columns if c not in keys)
    if connection.dialect.name != "postgresql":
        connection.execute(_sqlite_upsert(table, tuple(keys), updated), list(rows))
        return
    _execute(connection, table, _with_defaults(table, columns), tuple(keys), updated, rows)


def _execute(
    connection: Connection,
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    updated: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    statement = _unnest(connection.dialect, table, columns, keys, updated)
    try:
        arrays = _arrays(connection.dialect, table, columns, rows)
    except Exception as exc:
        # As SQLAlchemy wraps an error of a value's bind processing (a naive
        # time) or of a missing value: a StatementError, the store's to translate.
        raise StatementError(
            f"({exc.__class__.__module__}.{exc.__class__.__name__}) {exc}",
            statement,
            list(rows),
            exc,
            ismulti=True,
        ) from exc
    connection.exec_driver_sql(statement, arrays)


@lru_cache(maxsize=128)
def _with_defaults(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns given, then those with a Python-side default the rows leave out
    (an ordinary insert fills them: `attempts` 0)."""
    return columns + tuple(
        c.name for c in table.columns if c.default is not None and c.name not in columns
    )


def _arrays(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """One list per column, its values bound as the column's type binds them, then made
    the column's one Python type: psycopg refuses a list that mixes types ([2, 1.5]).

    Column by column, not value by value: a batch is thousands of values, so
    each step is one comprehension per column and is skipped where it would
    change nothing (a column of ints already; no bind processing)."""
    arrays: dict[str, list[Any]] = {}
    for n, (name, default, process, convert) in enumerate(_columns(dialect, table, columns)):
        if default is _MISSING:
            try:
                values = [row[name] for row in rows]
            except KeyError:
                values = [_value(row, name, default, i) for i, row in enumerate(rows)]
        else:
            values = [row.get(name, default) for row in rows]
        if process is not None:
            values = process(values)
        if convert is not None:
            target, to_type = convert
            if not set(map(type, values)) <= {target, type(None)}:
                values = [v if v is None else to_type(v) for v in values]
        arrays[f"c{n}"] = values
    return arrays


_MISSING = object()


def _value(row: Mapping[str, Any], name: str, default: Any, n: int) -> Any:
    value = row.get(name, default)
    if value is _MISSING:
        raise InvalidRequestError(
            f"A value is required for bind parameter {name!r}, in parameter group {n}"
        )
    return value


_Process = Callable[[list[Any]], list[Any]]


def _list_processor(column_type: Any, dialect: Dialect) -> _Process | None:
    """The column type's bind processing of a whole column, or None where it has none.

    A `Stamp` on PostgreSQL only moves an aware time to UTC (and refuses a
    naive one): a time in UTC already, as the core's are, is kept as it is;
    a `Reason` keeps None. Any other type's processor runs value by value."""
    process = column_type._cached_bind_processor(dialect)
    if process is None:
        return None
    method = getattr(type(column_type), "process_bind_param", None)
    if method is Stamp.process_bind_param and dialect.name == "postgresql":
        return lambda values: [v if v is None or v.tzinfo is UTC else process(v) for v in values]
    if method is Reason.process_bind_param:
        return lambda values: [v if v is None else process(v) for v in values]
    return lambda values: [process(v) for v in values]


@lru_cache(maxsize=128)
def _columns(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[tuple[str, Any, _Process | None, tuple[type, Callable[[Any], Any]] | None], ...]:
    """Per column: its name, its default for a row without it, its bind processor and
    its conversion to the column's Python type."""
    found = []
    for name in columns:
        column = table.c[name]
        found.append(
            (
                name,
                _default(column),
                _list_processor(column.type, dialect),
                _conversion(_python_type(column.type)),
            )
        )
    return tuple(found)


def _default(column: Column[Any]) -> Any:
    default = column.default
    if default is None:
        return _MISSING
    if isinstance(default, ScalarElementColumnDefault):
        return default.arg
    raise NotImplementedError(f"bulk writes take scalar defaults only: {column.name}")


def _python_type(column_type: Any) -> type | None:
    base = getattr(column_type, "impl_instance", column_type)
    try:
        found: type = base.python_type
    except NotImplementedError:
        return None
    return found


def _to_int(value: Any) -> Any:
    # A float rounds half to even, as PostgreSQL assigns a float8 to an integer.
    if isinstance(value, float):
        return round(value) if math.isfinite(value) else value
    return int(value) if isinstance(value, int) else value


def _to_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) else value


def _to_bool(value: Any) -> Any:
    return bool(value) if isinstance(value, int) and value in (0, 1) else value


_CONVERSIONS: dict[type | None, Callable[[Any], Any]] = {
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
}


def _conversion(python_type: type | None) -> tuple[type, Callable[[Any], Any]] | None:
    """The column's Python type and the conversion to it, for the types psycopg mixes."""
    if python_type is None or python_type not in _CONVERSIONS:
        return None
    return python_type, _CONVERSIONS[python_type]


@lru_cache(maxsize=128)
def _unnest(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    updated: tuple[str, ...],
) -> str:
    # Built once per shape. Only column names and types reach the text; every
    # value is a bound array, sent in binary (`%b`): psycopg escapes a text
    # array's elements one by one in Python, and JSON text is full of quotes.
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    arrays = ", ".join(
        f"CAST(%(c{n})b AS {_element_type(table.c[c].type, dialect)}[])"
        for n, c in enumerate(columns)
    )
    sql = f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"
    if keys:
        target = ", ".join(quote(k) for k in keys)
        if updated:
            changes = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updated)
            sql += f" ON CONFLICT ({target}) DO UPDATE SET {changes}"
        else:
            sql += f" ON CONFLICT ({target}) DO NOTHING"
    return sql


def _element_type(column_type: Any, dialect: Dialect) -> str:
    """The array's element type: text for any string column, whatever its length.

    An explicit cast to `varchar(40)` cuts a longer value without a word; the
    insert's own assignment to the column refuses it, as a plain insert does.
    """
    base = getattr(column_type, "impl_instance", column_type)
    if isinstance(base, String):
        return "TEXT"
    return str(column_type.compile(dialect=dialect))


@lru_cache(maxsize=64)
def _insert(table: Table) -> Any:
    return insert(table)


@lru_cache(maxsize=64)
def _sqlite_upsert(table: Table, keys: tuple[str, ...], updated: tuple[str, ...]) -> Any:
    statement = sqlite.insert(table)
    if not updated:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in updated}
    )
