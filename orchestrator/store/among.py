"""`column IN (a list bound at execution)`, as one array parameter on PostgreSQL.

SQLAlchemy's expanding IN writes one placeholder per value into the text: a
batch's read of 500 ids is a query of 10 kB, a different text for each list
length, which psycopg parses in Python on every execution (it caches only
short queries of few parameters) and the server never reuses. On PostgreSQL
`column = ANY(CAST(:name AS TEXT[]))` is the same condition with one
parameter and one text whatever the list's length. A varchar column compared
with text keeps its index (varchar's index is text's). SQLite keeps the
expanding IN.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Text, any_, bindparam, cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["among"]


class _Among(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    # A condition as it is, not compared with 1 where booleans are integers (SQLite).
    _is_implicitly_boolean = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy declares it an instance variable
        ("expanding", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, name: str) -> None:
        self.expanding = column.in_(bindparam(name, expanding=True))
        self.array = column == any_(cast(bindparam(name), ARRAY(Text)))


def among(column: Any, name: str) -> ColumnElement[bool]:
    """`column` (a text column) is one of the list bound as `name`."""
    return _Among(column, name)


@compiles(_Among)
def _expanding(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.expanding, **kw)


@compiles(_Among, "postgresql")
def _array(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.array, **kw)
