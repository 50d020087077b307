"""The store contract suite runs every test on SQLite and on PostgreSQL.

PostgreSQL tests are marked external_service: off CI they skip when the server
is absent, with CI=true they fail. One PostgreSQL database is upgraded once per
session and emptied before each test; SQLite gets a fresh file per test, a copy of
the session's upgraded one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dialects import DIALECTS, postgres_emptying
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tme.controller.store.db import make_engine

TABLES = (
    "run_logs",
    "run_events",
    "runs",
    "task_dependencies",
    "idempotency_keys",
    "outbox",
    "tasks",
    "devices",
    "agents",
    "sites",
    "audit_log",
    "audit_head",
    "workflow_cursor",  # its event id would point past the restarted ids
    "workflow_cancels",  # without runs of theirs left: pruning counts them
    # (and rollout_devices with them): a rollout left going names task ids by value,
    # which the restarted ids give to new tasks, taking them off the plain settle path
    "rollouts",
)


@pytest.fixture(scope="session")
def _pg_engine(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, list[str]]]:
    """The session's upgraded PostgreSQL database, and the statements that empty it."""
    engine = make_engine(request.getfixturevalue("upgraded_postgres"))
    yield engine, postgres_emptying(engine, TABLES)
    engine.dispose()


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An upgraded, empty database of each dialect (SQLite: a copy of the session's
    upgraded file)."""
    if request.param == "sqlite":
        fresh_sqlite: Callable[[Path], Engine] = request.getfixturevalue("fresh_sqlite")
        sqlite = fresh_sqlite(tmp_path / "store.db")
        yield sqlite
        sqlite.dispose()
        return
    pg, emptying = request.getfixturevalue("_pg_engine")
    with pg.begin() as connection:
        for statement in emptying:
            connection.exec_driver_sql(statement)
    yield pg


@pytest.fixture(params=DIALECTS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database of each dialect with no tables at all."""
    if request.param == "sqlite":
        sqlite = make_engine(f"sqlite:///{tmp_path}/empty.db")
        yield sqlite
        sqlite.dispose()
        return
    import psycopg

    request.getfixturevalue("postgres_url")  # skips or fails when PostgreSQL is absent
    name = f"tme_empty_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield pg
    pg.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def count(engine: Engine) -> Callable[[str], int]:
    """Rows in a table, read outside any test session."""

    def rows(table: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())

    return rows
