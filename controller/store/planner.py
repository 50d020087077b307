"""Hints for SQLite's query planner, rendered as plain SQL on PostgreSQL.

SQLite's statistics (after `ANALYZE` or `PRAGMA optimize`, which SQLite recommends)
give an index only the average number of rows per value. For `runs.state` that
average is huge (nearly every run kept is final), so a query for the few runs in
flight would scan every run instead of reading the state index. `rare(condition)`
tells SQLite that few rows meet the condition (`likelihood(..., 0.001)`), which
keeps it on the index; PostgreSQL, which keeps value frequencies, gets the condition
as it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

RARE = "0.001"  # a literal: SQLite takes no bound parameter there


class Rare(ColumnElement[bool]):
    """A condition few rows meet."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition itself: never rendered as `... = 1`
    _traverse_internals = [("condition", InternalTraversal.dp_clauseelement)]

    def __init__(self, condition: ColumnElement[bool]) -> None:
        self.condition = condition


def rare(condition: ColumnElement[bool]) -> Rare:
    return Rare(condition)


@compiles(Rare)
def _plain(element: Rare, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.condition, **kw))


@compiles(Rare, "sqlite")
def _likelihood(element: Rare, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.condition, **kw)}, {RARE})"


class Broad(Rare):
    """A condition many rows meet, or at least not so few that an index searching by it
    must win: SQLite then reads the index that gives the rows in the ORDER BY's order
    (`likelihood(..., 0.9)`) and stops at the LIMIT, where taking the condition for an
    equality on an index of its column (as it does without statistics) would read
    every row that meets it and sort them all. PostgreSQL gets the condition as it is."""

    inherit_cache = True


def broad(condition: ColumnElement[bool]) -> Broad:
    return Broad(condition)


BROAD = "0.9"  # a literal, as RARE


@compiles(Broad)
def _broad_plain(element: Broad, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.condition, **kw))


@compiles(Broad, "sqlite")
def _broad_likelihood(element: Broad, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.condition, **kw)}, {BROAD})"
