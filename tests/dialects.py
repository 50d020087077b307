"""Tests run on both stores: SQLite (a file of the test's own) and PostgreSQL (marked
external_service: off CI it skips when the server is absent, with CI=true it fails)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tme.controller.store.db import make_engine

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.external_service),
]


def upgraded_engine(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Engine:
    """An upgraded database of the dialect `request.param`: a new SQLite file `name` (a
    copy of the session's upgraded one), or the session's PostgreSQL test database,
    upgraded once (the caller empties what it needs empty)."""
    if request.param == "sqlite":
        fresh_sqlite: Callable[[Path], Engine] = request.getfixturevalue("fresh_sqlite")
        return fresh_sqlite(tmp_path / f"{name}.db")
    return make_engine(request.getfixturevalue("upgraded_postgres"))


# The tables that reference `tables` through foreign keys, however indirectly (what
# PostgreSQL's TRUNCATE ... CASCADE would empty with them), and the references among them.
_REFERENCES = """
WITH RECURSIVE reached(t) AS (
    SELECT unnest(CAST(:tables AS text[]))::regclass
    UNION
    SELECT con.conrelid::regclass FROM pg_constraint con JOIN reached ON con.confrelid = reached.t
    WHERE con.contype = 'f'
)
SELECT reached.t::text, con.confrelid::regclass::text
FROM reached LEFT JOIN pg_constraint con
    ON con.conrelid = reached.t AND con.contype = 'f' AND con.confrelid <> reached.t
"""
# The sequences of their serial and identity columns (what RESTART IDENTITY restarts).
_SEQUENCES = """
SELECT seq.oid::regclass::text FROM pg_class seq
JOIN pg_depend dep ON dep.objid = seq.oid AND dep.classid = 'pg_class'::regclass
    AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
WHERE seq.relkind = 'S' AND dep.refobjid = ANY(CAST(:tables AS regclass[]))
"""


def postgres_emptying(engine: Engine, tables: tuple[str, ...]) -> list[str]:
    """Statements that empty `tables` of a PostgreSQL database, and every table that
    references them, and restart their ids: what `TRUNCATE ... RESTART IDENTITY CASCADE`
    does, in a tenth of the time on tables of a few rows (TRUNCATE makes new files for
    each table and index: 0.2-0.4 s on a busy machine, before every test)."""
    with engine.connect() as connection:
        edges = connection.execute(text(_REFERENCES), {"tables": list(tables)}).all()
        refers: dict[str, set[str]] = {}
        for table, referenced in edges:
            refers.setdefault(table, set()).update([referenced] if referenced else [])
        sequences = connection.execute(text(_SEQUENCES), {"tables": list(refers)}).scalars()
        restarts = [f"ALTER SEQUENCE {sequence} RESTART" for sequence in sequences]
    order: list[str] = []  # a referencing table before the tables it references
    while refers:
        free = sorted(t for t in refers if not any(t in refs for refs in refers.values()))
        assert free, f"foreign keys in a cycle among {sorted(refers)}"
        order += free
        for table in free:
            del refers[table]
    return [f"DELETE FROM {table}" for table in order] + restarts
