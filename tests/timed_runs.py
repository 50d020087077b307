"""Runs that took a given time on the machine, for the tests of slow runs (a run's
duration against its task's usual)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Task, utcnow
from tme.schemas import TaskCreate


def noop_task(engine: Any, name: str = "close valve 3") -> int:
    """A new task (a noop for plant-x/skid-a) with its first run pending; its id."""
    body = TaskCreate.model_validate(
        {"name": name, "op": "noop", "target": {"site": "plant-x", "agent": "skid-a"}}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        session.commit()
        return task.id or 0


def run_taking(engine: Any, task_id: int, took_s: float, outcome: str = "succeeded") -> str:
    """A run of the task that started on the machine `took_s` before it ended in
    `outcome`, after the usual hops; its id."""
    with Session(engine) as session:
        task = session.get_one(Task, task_id)
        run = run_service.start_run(session, task, reason="run now", source="test")
        ended = utcnow()
        for state in ("queued", "dispatched"):
            run_service.transition(session, run, state)
        run_service.transition(session, run, "running", at=ended - timedelta(seconds=took_s))
        run_service.transition(session, run, outcome, at=ended, source="agent")
        session.commit()
        return run.id
