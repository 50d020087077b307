"""The schedule keeper follows schedule changes without touching the job store for
tasks that never had a schedule, and still drops a job whose schedule is removed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tme.controller.scheduler import JOBS_TABLE, ScheduleKeeper, job_id
from tme.controller.services.tasks import create_task, update_task
from tme.controller.store.db import session_scope
from tme.schemas import TaskCreate, TaskUpdate


@pytest.fixture
def keeper(engine: Engine) -> Iterator[ScheduleKeeper]:
    keeper = ScheduleKeeper(engine, str(engine.url))
    keeper.start()
    yield keeper
    keeper.stop()


def _job_store_statements(engine: Engine, keeper: ScheduleKeeper) -> list[str]:
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if JOBS_TABLE in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        keeper.sync_changes()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def test_unscheduled_tasks_cost_no_job_store_lookup(engine: Engine, keeper) -> None:
    keeper.sync_changes()
    with session_scope(engine) as session:
        for i in range(10):
            create_task(session, TaskCreate(name=f"one-off {i}"))
    assert _job_store_statements(engine, keeper) == []


def test_a_removed_schedule_drops_its_job(engine: Engine, keeper) -> None:
    assert keeper.scheduler is not None
    with session_scope(engine) as session:
        task, _ = create_task(session, TaskCreate(name="tick", schedule={"every_s": 60}))
    keeper.sync_changes()
    assert keeper.scheduler.get_job(job_id(task.id or 0)) is not None
    with session_scope(engine) as session:
        update_task(session, task.id or 0, TaskUpdate(schedule=None))
    keeper.sync_changes()
    assert keeper.scheduler.get_job(job_id(task.id or 0)) is None
