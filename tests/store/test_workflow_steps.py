"""A dependent's run, started by the workflow engine, keeps its task's own policies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import settle_pending
from tme.schemas import TaskCreate, TaskUpdate


def test_a_dependent_run_has_its_tasks_total_deadline(engine: Engine) -> None:
    """deadline_s bounds a run and its retries whether a schedule, a trigger, "run now"
    or a dependency started it (a dependency's run had no deadline at all)."""
    with session_scope(engine) as session:
        batch, _ = service.create_task(session, TaskCreate(name="batch"))
        data = {"name": "flush", "depends_on": [{"task": batch.id}], "deadline_s": 90}
        flush, _ = service.create_task(session, TaskCreate.model_validate(data))
    with session_scope(engine) as session:
        service.update_task(session, batch.id or 0, TaskUpdate(status="complete"))
    with session_scope(engine) as session:
        settle_pending(session, None)
    with session_scope(engine) as session:
        run = session.exec(select(Run).where(Run.task_id == flush.id)).one()
        link = session.get_one(RunLink, run.id)
        assert link.cause == "dependency"
        assert link.deadline_at is not None
        assert link.deadline_at - run.created_at == timedelta(seconds=90)
