"""What the dashboard's buttons do: the controller's own services, as the API calls them.

Run now, cancel and retry are the same service calls as `POST /api/v1/tasks/{id}/run`,
`POST /api/v1/runs/{id}/cancel` and `POST /api/v1/runs/{id}/retry` (overlap policy,
workflow links, outbox withdrawal and stop requests included), so the dashboard
and the API cannot drift apart. Each action runs in one transaction after the page
checked the viewer's session and permission again, committed with its audit row. An
action returns a note to show instead of "done", or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

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
from tme.controller.services.access import check_target_site, check_task_create
from tme.controller.services.launch import launch_run
from tme.controller.services.roles import Principal
from tme.controller.services.task_limits import check_task_limits
from tme.controller.services.workflow_cancel import going_in
from tme.controller.store.db import session_scope
from tme.controller.store.models import Task
from tme.controller.store.workflow_models import WorkflowCancel
from tme.errors import Conflict, TMEError
from tme.fleet_schemas import DevicePublic, SiteStopped
from tme.schemas import TaskCreate
from tme.states import RunState
from tme.ui.context import dashboard


@dataclass
class _Entry:
    """One dashboard action: its transaction and its audit row, filled in as it goes."""

    change: audit.AuditedChange
    target: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def session(self) -> Session:
        return self.change.session


@contextmanager
def _audited(principal: Principal, action: str, target: str) -> Iterator[_Entry]:
    """The action done in the block, in one transaction (`entry.session`) committed with
    its audit row as the CLI commits its changes (audit.audited_change): the change and
    the row saying who made it are committed together or not at all. A row that cannot
    be written rolls the action back (Unavailable: nothing changed). A service's refusal
    (a run in flight, a site outside the grant) changes nothing either; it is audited
    "failed" with the reason once rolled back, as the API audits a refused change."""
    engine = dashboard().engine
    refused: TMEError | None = None
    entry: _Entry | None = None
    try:
        with (
            session_scope(engine) as session,
            audit.audited_change(session, audit.key_for(engine)) as change,
        ):
            entry = _Entry(change, target)
            try:
                yield entry
            except audit.RowNotWritten:
                raise
            except TMEError as exc:
                refused = exc
                raise
            if not change.committed:  # else committed with the first part (cancel_workflow)
                _commit(change, principal, action, entry)
    finally:
        if refused is not None and entry is not None:
            entry.details["error"] = refused.message
            _record(principal, action, entry, "failed")


def _commit(change: audit.AuditedChange, principal: Principal, action: str, entry: _Entry) -> None:
    change.commit(
        action,
        actor=principal.username,
        target=entry.target,
        client="dashboard",
        details=entry.details,
    )


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
        task, _ = task_service.create_task(entry.session, body, on_run_ready=board.on_run_ready)
        entry.session.flush()
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
        found = point_values.find_device(
            entry.session, device.name, site=device.site, agent=device.agent
        )
        answer = do(entry.session, found, reason.strip(), principal.username, board.on_run_ready)
    return answer.run_id


def stop_site(principal: Principal, site: str, reason: str) -> SiteStopped:
    """Stop every device of `site` with a safe value now, as POST /api/v1/sites/{site}/stop."""
    board = dashboard()
    with _audited(principal, "run.control:stop_site", f"site {site}") as entry:
        entry.details["reason"] = reason.strip()
        check_target_site(principal, site, field="site")
        return device_stop.stop_site(
            entry.session, site, None, reason.strip(), principal.username, board.on_run_ready
        )


def run_now(principal: Principal, task_id: int) -> str | None:
    """Start a run now as the task's overlap policy allows (a refused start is recorded)."""
    board = dashboard()
    with _audited(principal, "run.control:run_now", f"task {task_id}") as entry:
        task = task_service.get_task(entry.session, task_id)
        run = launch_run(
            entry.session,
            task,
            cause="manual",
            reason=f"run now by {principal.username}",
            hook=board.on_run_ready,
            source="dashboard",
        )
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
        task = task_service.get_task(entry.session, task_id)
        started = device_check.check_task(
            entry.session, task, principal.username, board.on_run_ready
        )
        run_id = str(started.latest_run_id)
        entry.details["run"] = run_id
    return run_id


def cancel_run(principal: Principal, run_id: str) -> str | None:
    """Cancel at once before dispatch, or when the task has no agent to ask (an external
    one); a run on its way to an agent is asked to stop."""
    with _audited(principal, "run.control:cancel", f"run {run_id}") as entry:
        run = cancel_service.cancel_run(entry.session, run_id)
        state, reason = run.state, run.reason
    if state != RunState.canceled:
        return f"asked the agent to stop run {run_id[:8]}"
    if reason == cancel_service.NO_AGENT:
        return f"canceled run {run_id[:8]} at once: its task has no agent to ask"
    return None


def cancel_workflow(principal: Principal, workflow_id: str) -> str:
    """Stop the workflow run as a whole (POST /api/v1/workflows/{id}/cancel): its runs
    still going are canceled, and none of its steps starts or is retried afterwards.
    The cancel is committed with its audit row (naming the runs going then) before its
    runs are canceled, as the service commits it."""
    action = "run.control:cancel_workflow"
    with _audited(principal, action, f"workflow run {workflow_id}") as entry:

        def commit_cancel(cancel: WorkflowCancel) -> None:
            entry.details["runs"] = going_in(entry.session, cancel.workflow_id)
            _commit(entry.change, principal, action, entry)

        done = cancel_service.cancel_workflow(
            entry.session, workflow_id, principal, commit=commit_cancel
        )
        asked = sum(1 for run in done.runs if run.state != RunState.canceled)
    return (
        f"canceled workflow run {workflow_id[:8]}: {len(done.runs) - asked} run(s) canceled,"
        f" {asked} asked to stop; its steps not started yet are skipped"
    )


def cancel_rollout(principal: Principal, rollout_id: int) -> str:
    """Cancel a rollout (POST /api/v1/rollouts/{id}/cancel): no further run starts, its
    runs going are canceled or asked to stop."""
    with _audited(principal, "run.control:cancel_rollout", f"rollout {rollout_id}") as entry:
        session = entry.session
        rollout = rollout_reads.visible_rollout(session, rollout_id, principal, lock=True)
        rollouts.cancel_rollout(session, rollout, principal.username)
        counts = rollout_reads.to_public(session, rollout, devices=False).counts
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
        run = cancel_service.retry_run(entry.session, run_id, board.on_run_ready)
        new_id, state, reason = run.id, run.state, run.reason
        entry.details["run"] = new_id
    if state == RunState.skipped:
        raise Conflict(reason, details={"run_id": run_id, "skipped_run_id": new_id})
    return new_id


def delete(principal: Principal, task_id: int) -> None:
    board = dashboard()
    with _audited(principal, "task.write:delete", f"task {task_id}") as entry:
        task_service.delete_task(entry.session, task_id, board.on_run_ready)


def task_statuses(task_ids: list[int]) -> dict[int, str]:
    with session_scope(dashboard().engine) as session:
        rows = session.exec(select(Task.id, Task.status).where(col(Task.id).in_(task_ids)))
        return {int(i or 0): s for i, s in rows}
