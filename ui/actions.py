"""What the dashboard's buttons do, through the same services as the API.

Each action checks the viewer's session and permission again, runs in one
transaction, and is written to the audit log like an API change.
"""

from __future__ import annotations

from typing import Any

from tme.controller.services import audit
from tme.controller.services import runs as run_service
from tme.controller.services import tasks as task_service
from tme.controller.services.access import check_task_create
from tme.controller.services.roles import Principal
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, Task
from tme.errors import Conflict
from tme.schemas import TaskCreate
from tme.states import RunState
from tme.ui.context import dashboard


def _audit(principal: Principal, action: str, target: str, **details: Any) -> None:
    audit.record(
        dashboard().engine,
        action,
        actor=principal.username,
        target=target,
        client="dashboard",
        details=details,
    )


def create_task(principal: Principal, body: TaskCreate) -> int:
    check_task_create(principal, body)
    board = dashboard()
    with session_scope(board.engine) as session:
        task, _ = task_service.create_task(session, body, on_run_ready=board.on_run_ready)
        session.commit()
        task_id = task.id or 0
    _audit(principal, "task.write:create", f"task {task_id}", name=body.name)
    return task_id


def run_now(principal: Principal, task_id: int) -> str:
    board = dashboard()
    with session_scope(board.engine) as session:
        task = task_service.get_task(session, task_id)
        latest = session.get(Run, task.latest_run_id) if task.latest_run_id else None
        if latest is not None and not RunState(latest.state).is_final:
            raise Conflict(f"task {task_id} is already {latest.state}")
        attempt = 1
        run = run_service.start_run(
            session,
            task,
            reason=f"run now by {principal.username}",
            source="dashboard",
            attempt=attempt,
        )
        if board.on_run_ready is not None and task.op != "external":
            board.on_run_ready(session, run, task)
        session.commit()
        run_id = run.id
    _audit(principal, "run.control:run_now", f"task {task_id}", run=run_id)
    return run_id


def cancel(principal: Principal, task_id: int) -> None:
    board = dashboard()
    with session_scope(board.engine) as session:
        task = task_service.get_task(session, task_id)
        run = session.get(Run, task.latest_run_id) if task.latest_run_id else None
        if run is None or RunState(run.state).is_final:
            raise Conflict(f"task {task_id} has no run to cancel")
        run_service.transition(
            session,
            run,
            RunState.canceled,
            reason=f"canceled by {principal.username}",
            source="dashboard",
        )
        session.commit()
    _audit(principal, "run.control:cancel", f"task {task_id}")


def delete(principal: Principal, task_id: int) -> None:
    board = dashboard()
    with session_scope(board.engine) as session:
        task_service.delete_task(session, task_id)
        session.commit()
    _audit(principal, "task.write:delete", f"task {task_id}")


def task_statuses(task_ids: list[int]) -> dict[int, str]:
    from sqlmodel import col, select

    with session_scope(dashboard().engine) as session:
        rows = session.exec(select(Task.id, Task.status).where(col(Task.id).in_(task_ids)))
        return {int(i or 0): s for i, s in rows}
