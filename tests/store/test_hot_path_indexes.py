"""Migration 0009's indexes (and 0019's of the outbox), and the hot reads they serve, on
SQLite and PostgreSQL.

A plan is read from the database itself (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on
PostgreSQL) for the statements the real code sends. The tables of a test are tiny,
so PostgreSQL is told not to read them whole, and an index that would win on them
for another reason is dropped for the look (in a transaction rolled back after).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller import workflow
from tme.controller.dispatcher import UNPUBLISHED
from tme.controller.services.launch import active_runs
from tme.controller.store.db import alembic_config, current_revision, head_revision, upgrade
from tme.controller.store.models import Run, utcnow

NEW_INDEXES = {
    ("run_links", "ix_run_links_held"),
    ("runs", "ix_runs_created_at"),
    ("runs", "ix_runs_finished_at"),
}


def plan_of(engine: Engine, read: Callable[[Session], Any], *, drop: tuple[str, ...] = ()) -> str:
    """The plans of the statements `read` sends, one line per step, with the indexes
    in `drop` out of the way meanwhile."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("BEGIN")  # else pysqlite commits a DROP at once
        for index in drop:
            connection.exec_driver_sql(f"DROP INDEX {index}")
        if not sqlite:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        event.listen(connection, "before_cursor_execute", capture)
        with Session(bind=connection) as session:
            read(session)
        event.remove(connection, "before_cursor_execute", capture)
        explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        lines = [
            str(row[-1])
            for statement, parameters in sent
            for row in connection.exec_driver_sql(explain + statement, parameters)
        ]
        connection.rollback()
    assert lines, "the read sent no statement"
    return "\n".join(lines)


def indexes(engine: Engine) -> set[tuple[str, str]]:
    found = inspect(engine)
    return {
        (table, str(index["name"]))
        for table in ("runs", "run_links")
        for index in found.get_indexes(table)
    }


def test_0009_downgrades_and_upgrades_again(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert indexes(empty_engine) >= NEW_INDEXES
    held = next(
        i
        for i in inspect(empty_engine).get_indexes("run_links")
        if i["name"] == "ix_run_links_held"
    )
    assert "held" in str(next(iter(held["dialect_options"].values())))  # partial: held rows only

    command.downgrade(alembic_config(empty_engine), "0009-1")
    revisions = set((current_revision(empty_engine) or "").split("+"))
    assert "0008" in revisions and "0009" not in revisions
    assert not NEW_INDEXES & indexes(empty_engine)

    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    assert indexes(empty_engine) >= NEW_INDEXES


def test_settling_finds_held_runs_through_the_held_links(engine: Engine) -> None:
    """Which tasks of finished runs have runs held in their queue: read from the few
    held links, not from every run of those tasks (nor every link)."""
    plan = plan_of(engine, lambda s: s.execute(workflow.TASKS_WITH_MORE, {"ids": [1, 2]}).all())
    assert "ix_run_links_held" in plan, plan
    if engine.dialect.name == "sqlite":
        assert "ix_runs_task_created" not in plan, plan


def test_active_runs_of_a_task_are_read_by_state(engine: Engine) -> None:
    """The state index can serve the active runs of a task (few of all runs kept)."""
    plan = plan_of(engine, lambda s: active_runs(s, 1), drop=("ix_runs_task_created",))
    assert "ix_runs_state" in plan, plan


@pytest.mark.parametrize("column", ["created_at", "finished_at"])
def test_runs_are_read_by_time_through_an_index(engine: Engine, column: str) -> None:
    """Runs created or finished lately (dashboard, reports) without reading every run."""
    since = utcnow() - timedelta(hours=1)
    plan = plan_of(
        engine, lambda s: s.exec(select(Run.id).where(col(getattr(Run, column)) >= since)).all()
    )
    assert f"ix_runs_{column}" in plan, plan


def test_the_dispatcher_reads_its_next_batch_in_order_from_the_unpublished_rows(
    engine: Engine,
) -> None:
    """Higher priority first, then as written: read in that order from the partial index
    of the unpublished rows, stopping at the batch, not by sorting the whole backlog."""
    plan = plan_of(engine, lambda s: s.execute(UNPUBLISHED).all())
    assert "ix_outbox_unpublished" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
