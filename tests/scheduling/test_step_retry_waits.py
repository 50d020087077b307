"""A step's planned retry waits out its backoff when its dependency settles again in the
workflow run (a dependency's run retried by hand): deciding the step again must not
start the retry early."""

from __future__ import annotations

from sqlmodel import Session, col, select

from tme.controller.services.cancel import retry_run
from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, Task
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import RunState


def test_a_dependency_settling_again_leaves_the_steps_planned_retry_waiting(
    session: Session,
) -> None:
    started: list[str] = []

    def hook(_session: Session, run: Run, _task: Task) -> None:
        started.append(run.id)

    batch, _ = create_task(session, TaskCreate(name="batch", trigger="go"))
    after = [{"task": batch.id, "on": "success"}]
    retries = {"max": 1, "backoff_s": 3600}
    flush, _ = create_task(session, TaskCreate(name="flush", depends_on=after, retries=retries))
    first = launch_run(session, batch, cause="trigger", reason="trigger go", hook=None)
    transition(session, first, RunState.succeeded, reason="reported complete")
    assert settle_run(session, first, hook)
    step = session.exec(select(Run).where(Run.task_id == flush.id)).one()
    transition(session, step, RunState.failed, reason="reported fail")
    assert settle_run(session, step, hook)  # its retry is planned, an hour away
    again = retry_run(session, first.id, hook)  # the batch, again, by hand
    transition(session, again, RunState.succeeded, reason="reported complete")
    started.clear()
    assert settle_run(session, again, hook)
    runs = session.exec(select(Run).where(Run.task_id == flush.id).order_by(col(Run.attempt))).all()
    planned = runs[-1]
    assert [r.state for r in runs] == [RunState.failed, RunState.waiting]
    assert started == []  # not started early
    link = session.get(RunLink, planned.id)
    assert link is not None and link.retry_at is not None
