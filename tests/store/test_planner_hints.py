"""SQLite's planner after ANALYZE: the watchdog still reads the few runs in flight
through the state index, not every run kept (it holds the write gate meanwhile)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from test_hot_path_indexes import plan_of

from tme.controller.services.tasks import create_task
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.models import Run, utcnow
from tme.controller.store.planner import rare
from tme.controller.watchdog import check_timeouts
from tme.schemas import TaskCreate

KEPT, IN_FLIGHT = 20_000, 20


def test_the_watchdog_reads_the_state_index_after_analyze(tmp_path: Path) -> None:
    """ANALYZE (or PRAGMA optimize, which SQLite recommends) gives the state index the
    average rows per state, huge since nearly every run kept is final: without the hint
    the watchdog's pass scanned all of them (0.6 s at 200,000 runs, twice a second)."""
    engine = make_engine(f"sqlite:///{tmp_path}/kept.db")
    upgrade(engine)
    with Session(engine) as session:
        task, _ = create_task(session, TaskCreate(name="often", op="external"))
        session.commit()
        task_id = task.id
    now = utcnow()
    with engine.begin() as connection:
        rows = [
            {
                "id": str(uuid.uuid4()),
                "state": "succeeded" if i >= IN_FLIGHT else "running",
                "at": now - timedelta(seconds=i),
            }
            for i in range(KEPT)
        ]
        connection.execute(
            text(
                "INSERT INTO runs (id, task_id, state, attempt, reason, created_at, updated_at)"
                " VALUES (:id, :task, :state, 1, '', :at, :at)"
            ),
            [{**row, "task": task_id} for row in rows],
        )
        connection.exec_driver_sql("ANALYZE")
    plan = plan_of(engine, lambda session: check_timeouts(session, utcnow(), 30.0))
    assert "ix_runs_state" in plan
    assert "SCAN runs" not in plan
    engine.dispose()


def test_a_rare_condition_is_a_hint_on_sqlite_and_plain_elsewhere() -> None:
    query = select(Run.id).where(rare(col(Run.state).in_(["running"])))
    on_sqlite = str(query.compile(dialect=sqlite.dialect()))
    assert "WHERE likelihood(runs.state IN (__[POSTCOMPILE_state_1]), 0.001)" in on_sqlite
    assert "= 1" not in on_sqlite  # a bare condition, which an index can serve
    on_postgresql = str(query.compile(dialect=postgresql.dialect()))
    assert "WHERE runs.state IN (__[POSTCOMPILE_state_1])" in on_postgresql
    assert "likelihood" not in on_postgresql
