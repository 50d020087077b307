"""The workflow page's Cancel workflow run button: only for roles that control runs,
after asking; it cancels the workflow run as the API does, and is audited."""

from __future__ import annotations

from typing import Any

from nicegui.testing import User
from sqlmodel import Session, select

from tme.controller.services.audit import AuditFilters, query
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, Task
from tme.controller.workflow import settle_pending
from tme.schemas import TaskCreate


def _task(board: Any, **fields: Any) -> int:
    with Session(board.engine) as session:
        task, _ = create_task(session, TaskCreate.model_validate(fields))
        session.commit()
        return task.id or 0


def _chain(board: Any) -> tuple[str, int]:
    """An external batch (it runs at once) and its alarm on failure: the workflow run and
    the alarm's task."""
    batch = _task(board, name="batch")
    alarm = _task(board, name="alarm", depends_on=[{"task": batch, "on": "failure"}])
    with Session(board.engine) as session:
        task = session.get(Task, batch)
        assert task is not None and task.latest_run_id
        return task.latest_run_id, alarm


async def test_a_viewer_has_no_cancel_button(user: User, board, sign_in) -> None:
    workflow_id, _ = _chain(board)
    sign_in(user, "viewer")
    await user.open(f"/workflows/{workflow_id}")
    await user.should_see("Workflow run")
    await user.should_not_see(marker="cancel-workflow")


async def test_an_operator_cancels_the_workflow_run_after_confirming(
    user: User, board, sign_in
) -> None:
    workflow_id, alarm = _chain(board)
    sign_in(user, "operator")
    await user.open(f"/workflows/{workflow_id}")
    user.find(marker="cancel-workflow").click()
    await user.should_see(f"Cancel workflow run {workflow_id[:8]}?")
    with Session(board.engine) as session:
        assert session.get_one(Run, workflow_id).state == "pending"  # nothing before the yes
    user.find(marker="confirm-cancel-workflow").click()
    await user.should_see(f"canceled workflow run {workflow_id[:8]}: 1 run(s) canceled")
    with Session(board.engine) as session:
        assert session.get_one(Run, workflow_id).state == "canceled"
        while settle_pending(session, None):  # the workflow engine decides the alarm
            session.commit()
        session.commit()
        (step,) = session.exec(select(Run).where(Run.task_id == alarm)).all()
        assert (step.state, step.reason) == (
            "skipped",
            f"workflow run {workflow_id} canceled by operator-0",
        )
        entries = query(session, AuditFilters(action="run.control:cancel_workflow"))
        assert [(e.actor, e.target, e.outcome) for e in entries] == [
            ("operator-0", f"workflow run {workflow_id}", "ok")
        ]
    # over now: the button goes (the service would answer 409, nothing was running)
    await user.should_not_see(marker="cancel-workflow", retries=30)
    await user.open(f"/workflows/{workflow_id}")
    await user.should_see("Workflow run")
    await user.should_not_see(marker="cancel-workflow")
