"""What the dashboard's buttons do: the controller's own services, as the API calls them.

Run now, cancel and retry are the same service calls as `POST /api/v1/tasks/{id}/run`,
`POST /api/v1/runs/{id}/cancel` and `POST /api/v1/runs/{id}/retry` (overlap policy,
workflow links, outbox withdrawal and stop requests included), so the dashboard
and the API cannot drift apart. Each action runs in one transaction after the page
checked the viewer's session and permission again, and is written to the audit log
like an API change. An action returns a note to show instead of "done", or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from tme.controller.services import (
    audit,
    device_check,
    device_stop,
    point_values,
    rollout_reads,
    rollouts,
)
from tme.controller.services import cancel as cancel_service
from tme.controller.services import tasks as task_service
from tme.controller.services.access import check_task_create
from tme.controller.services.launch import launch_run
from tme.controller.services.roles import Principal
from tme.controller.services.task_limits import check_task_limits
from tme.controller.store.db import session_scope
from tme.controller.store.models import Task
from tme.errors import Conflict, TMEError
from tme.fleet_schemas import DevicePublic
from tme.schemas import TaskCreate
from tme.states import RunState
from tme.ui.context import dashboard


@dataclass
class _Entry:
    """The audit row of one dashboard action, filled in as the action goes."""

    target: str
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _audited(principal: Principal, action: str, target: str) -> Iterator[_Entry]:
    """Audit the action done in the block as the API audits a change: "ok", or "failed"
    with the reason when a service refused it (a run in flight, a site outside the grant)."""
    entry = _Entry(target)
    try:
        yield entry
    except TMEError as exc:
        entry.details["error"] = exc.message
        _record(principal, action, entry, "failed")
        raise
    _record(principal, action, entry, "ok")


def _record(principal: Principal, action: str, entry: _Entry, outcome: str) -> None:
    audit.record(
        dashboard().engine,
        action,
        actor=principal.username,
        target=entry.target,
        outcome=outcome,
        client="dashboard",
        details=entry.details,
    )


def create_task(principal: Principal, body: TaskCreate) -> int:
    board = dashboard()
    with _audited(principal, "task.write:create", "task") as entry:
        entry.details["name"] = body.name
        check_task_create(principal, body)
        check_task_limits(board.settings.tasks, body)  # as the API checks it
        with session_scope(board.engine) as session:
            task, _ = task_service.create_task(session, body, on_run_ready=board.on_run_ready)
            session.commit()
            task_id = task.id or 0
        entry.target = f"task {task_id}"
    return task_id


def stop_device(
    principal: Principal, device: DevicePublic, reason: str, action: str = "stop"
) -> str | None:
    """Stop the device now (or with `action` "resume", lift its stop); the id of the run
    that does it (to open its page)."""
    board = dashboard()
    do = device_stop.stop_device if action == "stop" else device_stop.resume_device
    where = f"device {device.site}/{device.agent}/{device.name}"
    with _audited(principal, f"run.control:{action}_device", where) as entry:
        entry.details["reason"] = reason.strip()
        with session_scope(board.engine) as session:
            found = point_values.find_device(
                session, device.name, site=device.site, agent=device.agent
            )
            answer = do(session, found, reason.strip(), principal.username, board.on_run_ready)
            session.commit()
    return answer.run_id


def run_now(principal: Principal, task_id: int) -> str | None:
    """Start a run now as the task's overlap policy allows (a refused start is recorded)."""
    board = dashboard()
    with _audited(principal, "run.control:run_now", f"task {task_id}") as entry:
        with session_scope(board.engine) as session:
            task = task_service.get_task(session, task_id)
            run = launch_run(
                session,
                task,
                cause="manual",
                reason=f"run now by {principal.username}",
                hook=board.on_run_ready,
                source="dashboard",
            )
            session.commit()
            run_id, state, reason = run.id, run.state, run.reason
        entry.details["run"] = run_id
    if state == RunState.skipped:
        raise Conflict(reason, details={"task_id": task_id, "run_id": run_id})
    return f"started run {run_id} of task {task_id} ({state})"


def check(principal: Principal, task_id: int) -> str:
    """Ask the task's agent what it would do now (POST /api/v1/tasks/{id}/check); returns
    the check's run id."""
    board = dashboard()
    with _audited(principal, "run.control:check", f"task {task_id}") as entry:
        with session_scope(board.engine) as session:
            task = task_service.get_task(session, task_id)
            started = device_check.check_task(session, task, principal.username, board.on_run_ready)
            session.commit()
            run_id = str(started.latest_run_id)
        entry.details["run"] = run_id
    return run_id


def cancel_run(principal: Principal, run_id: str) -> str | None:
    """Cancel at once before dispatch, or when the task has no agent to ask (an external
    one); a run on its way to an agent is asked to stop."""
    with (
        _audited(principal, "run.control:cancel", f"run {run_id}"),
        session_scope(dashboard().engine) as session,
    ):
        run = cancel_service.cancel_run(session, run_id)
        session.commit()
        state, reason = run.state, run.reason
    if state != RunState.canceled:
        return f"asked the agent to stop run {run_id[:8]}"
    if reason == cancel_service.NO_AGENT:
        return f"canceled run {run_id[:8]} at once: its task has no agent to ask"
    return None


def cancel_workflow(principal: Principal, workflow_id: str) -> str:
    """Stop the workflow run as a whole (POST /api/v1/workflows/{id}/cancel): its runs
    still going are canceled, and none of its steps starts or is retried afterwards."""
    with (
        _audited(principal, "run.control:cancel_workflow", f"workflow run {workflow_id}") as entry,
        session_scope(dashboard().engine) as session,
    ):
        done = cancel_service.cancel_workflow(session, workflow_id, principal)
        session.commit()
        asked = sum(1 for run in done.runs if run.state != RunState.canceled)
        entry.details["runs"] = [run.id for run in done.runs]
    return (
        f"canceled workflow run {workflow_id[:8]}: {len(done.runs) - asked} run(s) canceled,"
        f" {asked} asked to stop; its steps not started yet are skipped"
    )


def cancel_rollout(principal: Principal, rollout_id: int) -> str:
    """Cancel a rollout (POST /api/v1/rollouts/{id}/cancel): no further run starts, its
    runs going are canceled or asked to stop."""
    with (
        _audited(principal, "run.control:cancel_rollout", f"rollout {rollout_id}"),
        session_scope(dashboard().engine) as session,
    ):
        rollout = rollout_reads.visible_rollout(session, rollout_id, principal, lock=True)
        rollouts.cancel_rollout(session, rollout, principal.username)
        counts = rollout_reads.to_public(session, rollout, devices=False).counts
        session.commit()
    said = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"canceled rollout {rollout_id}: {said}"


def cancel(principal: Principal, task_id: int) -> str | None:
    """Cancel the task's latest run."""
    with session_scope(dashboard().engine) as session:
        run_id = task_service.get_task(session, task_id).latest_run_id
    if run_id is None:
        raise Conflict(f"task {task_id} has no run to cancel", details={"task_id": task_id})
    return cancel_run(principal, run_id)


def retry(principal: Principal, run_id: str) -> str:
    """Run a settled step again in its workflow run, as the task's overlap policy allows
    (a refused retry is recorded, as for run now); returns the new run's id."""
    board = dashboard()
    with _audited(principal, "run.control:retry", f"run {run_id}") as entry:
        with session_scope(board.engine) as session:
            run = cancel_service.retry_run(session, run_id, board.on_run_ready)
            session.commit()
            new_id, state, reason = run.id, run.state, run.reason
        entry.details["run"] = new_id
    if state == RunState.skipped:
        raise Conflict(reason, details={"run_id": run_id, "skipped_run_id": new_id})
    return new_id


def delete(principal: Principal, task_id: int) -> None:
    board = dashboard()
    with (
        _audited(principal, "task.write:delete", f"task {task_id}"),
        session_scope(board.engine) as session,
    ):
        task_service.delete_task(session, task_id, board.on_run_ready)
        session.commit()


def task_statuses(task_ids: list[int]) -> dict[int, str]:
    with session_scope(dashboard().engine) as session:
        rows = session.exec(select(Task.id, Task.status).where(col(Task.id).in_(task_ids)))
        return {int(i or 0): s for i, s in rows}
