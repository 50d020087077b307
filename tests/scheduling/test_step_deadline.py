"""A workflow step keeps its task's total deadline, as a run started any other way."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run
from tme.controller.watchdog import check_timeouts
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import RunState


def test_a_step_started_by_its_dependency_times_out_past_its_deadline(session: Session) -> None:
    # "flush after the batch, within 10 minutes": the step is timed out past its
    # deadline_s, not left waiting (or retrying) for ever.
    batch, _ = create_task(session, TaskCreate(name="batch", trigger="shift"))
    after = [{"task": batch.id, "on": "success"}]
    flush, _ = create_task(session, TaskCreate(name="flush", depends_on=after, deadline_s=600))
    run = launch_run(session, batch, cause="trigger", reason="trigger shift", hook=None)
    transition(session, run, RunState.succeeded, reason="reported complete")
    assert settle_run(session, run, None)
    step = session.exec(select(Run).where(Run.task_id == flush.id)).one()
    assert step.state == RunState.pending
    check_timeouts(session, step.created_at + timedelta(seconds=601), default_timeout_s=30)
    assert step.state == RunState.timed_out
    assert "total deadline" in step.reason
