"""A trigger and a schedule firing one task at the same moment start one run, not two,
when its overlap policy is skip: on both dialects the second launch waits for the
first to commit and then counts its run."""

from __future__ import annotations

from racing import race
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller.services.launch import launch_run
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, Task
from tme.schemas import TaskCreate
from tme.states import FINAL_STATES


def test_trigger_and_schedule_at_once_start_one_run(any_engine: Engine) -> None:
    with session_scope(any_engine) as session:
        task, _ = create_task(
            session, TaskCreate(name="flush", trigger="batch-done", overlap={"policy": "skip"})
        )
    task_id = task.id or 0

    def launch(session: Session, cause: str) -> None:
        own = session.get(Task, task_id)
        assert own is not None
        launch_run(session, own, cause=cause, reason=f"{cause} fired", hook=None)

    def schedule_fires() -> None:
        with session_scope(any_engine) as session:
            launch(session, "schedule")

    race(
        any_engine,
        lambda first: launch(first, "trigger"),
        schedule_fires,
        "FROM runs",
        "the schedule's launch to count or lock",
    )
    with Session(any_engine) as session:
        runs = session.exec(
            select(Run).where(Run.task_id == task_id).order_by(col(Run.created_at))
        ).all()
    active = [r for r in runs if r.state not in FINAL_STATES]
    assert len(runs) == 2 and len(active) == 1, [(r.state, r.reason) for r in runs]
