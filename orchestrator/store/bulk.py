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

Each value goes through its column type's bind processing (a `Stamp`'s UTC,
a `Reason`'s cut) as an ordinary insert would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import String, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect

__all__ = ["insert_rows", "upsert"]


def insert_rows(connection: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert the rows (each with the same columns) in one statement on PostgreSQL."""
    if not rows:
        return
    columns = tuple(rows[0])
    if connection.dialect.name != "postgresql":
        connection.execute(_insert(table), list(rows))
        return
    statement = _unnest(connection.dialect, table, columns, (), ())
    connection.exec_driver_sql(statement, _arrays(connection.dialect, table, columns, rows))


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
    statement = _unnest(connection.dialect, table, columns, tuple(keys), updated)
    connection.exec_driver_sql(statement, _arrays(connection.dialect, table, columns, rows))


def _arrays(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """One list per column, its values bound as the column's type binds them."""
    arrays: dict[str, list[Any]] = {}
    for n, (name, process) in enumerate(_processors(dialect, table, columns)):
        values = [row[name] for row in rows]
        arrays[f"c{n}"] = values if process is None else [process(v) for v in values]
    return arrays


@lru_cache(maxsize=128)
def _processors(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    return tuple((name, table.c[name].type._cached_bind_processor(dialect)) for name in columns)


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
