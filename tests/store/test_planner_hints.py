"""SQLite's planner after ANALYZE: the watchdog still reads the few runs in flight
through the state index, not every run kept (it holds the write gate meanwhile)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from test_hot_path_indexes import plan_of

from tme.controller.services.launch import active_runs
from tme.controller.services.tasks import create_task, delete_task
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.models import Run, utcnow
from tme.controller.store.planner import rare
from tme.controller.watchdog import check_timeouts
from tme.errors import Conflict
from tme.schemas import TaskCreate

KEPT, IN_FLIGHT = 20_000, 20


@pytest.fixture
def analyzed(tmp_path: Path) -> Iterator[tuple[Engine, int]]:
    """A SQLite database of one busy task whose runs are nearly all final, after ANALYZE
    (or PRAGMA optimize, which SQLite recommends): the state index then has only the
    average rows per state, huge since nearly every run kept is final."""
    engine = make_engine(f"sqlite:///{tmp_path}/kept.db")
    upgrade(engine)
    with Session(engine) as session:
        task, _ = create_task(session, TaskCreate(name="often", op="external"))
        session.commit()
        task_id = task.id or 0
    now = utcnow()
    rows = [
        {
            "id": str(uuid.uuid4()),
            "task": task_id,
            "state": "succeeded" if i >= IN_FLIGHT else "running",
            "at": now - timedelta(seconds=i),
        }
        for i in range(KEPT)
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (id, task_id, state, attempt, reason, created_at, updated_at)"
                " VALUES (:id, :task, :state, 1, '', :at, :at)"
            ),
            rows,
        )
        connection.exec_driver_sql("ANALYZE")
    yield engine, task_id
    engine.dispose()


def test_the_watchdog_reads_the_state_index_after_analyze(analyzed: tuple[Engine, int]) -> None:
    """Without the hint its pass scanned every run kept in id order (0.6 s at 200,000
    runs, twice a second, holding the write gate every writer waits for)."""
    engine, _task = analyzed
    plan = plan_of(engine, lambda session: check_timeouts(session, utcnow(), 30.0))
    assert "ix_runs_state" in plan
    assert "SCAN runs" not in plan


def test_a_tasks_runs_in_flight_are_read_by_state_after_analyze(
    analyzed: tuple[Engine, int],
) -> None:
    """A scheduled fire (its overlap policy) and a delete ask for a task's runs in
    flight; by the task's index that is every run it ever had."""
    engine, task_id = analyzed

    def refused_delete(session: Session) -> None:
        with pytest.raises(Conflict):
            delete_task(session, task_id)

    for read in (lambda session: active_runs(session, task_id), refused_delete):
        plan = plan_of(engine, read)
        assert "ix_runs_state" in plan and "ix_runs_task_created" not in plan, plan


def test_a_rare_condition_is_a_hint_on_sqlite_and_plain_elsewhere() -> None:
    query = select(Run.id).where(rare(col(Run.state).in_(["running"])))
    on_sqlite = str(query.compile(dialect=sqlite.dialect()))
    assert "WHERE likelihood(runs.state IN (__[POSTCOMPILE_state_1]), 0.001)" in on_sqlite
    assert "= 1" not in on_sqlite  # a bare condition, which an index can serve
    on_postgresql = str(query.compile(dialect=postgresql.dialect()))
    assert "WHERE runs.state IN (__[POSTCOMPILE_state_1])" in on_postgresql
    assert "likelihood" not in on_postgresql
