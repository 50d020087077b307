"""Run control: run now, pause and resume a task, named triggers, cancel, retry.

POST /api/v1/tasks/{id}/run            start a run now (the overlap policy applies, a pause not)
POST /api/v1/tasks/{id}/check          ask its agent what it would do now (a dry run)
POST /api/v1/tasks/{id}/pause|resume   stop or restart its automatic starts (schedule,
                                       trigger, dependencies, planned retries)
POST /api/v1/triggers/{name}           start every task bound to the trigger
POST /api/v1/runs/{id}/cancel[?force]  cancel at once, or ask the agent to stop
POST /api/v1/runs/{id}/retry           run a settled step again in its workflow run
GET  /api/v1/workflows/{id}            the runs of one workflow run
POST /api/v1/workflows/{id}/cancel[?force]  cancel it as a whole: its runs going, its steps to come
GET  /api/v1/resources                 the exclusive resources: who holds each, who waits
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlmodel import Session, col, select

from tme.controller.api.change_commit import ChangeCommit, ChangeDep
from tme.controller.api.deps import PrincipalDep, RunReadyDep, SessionDep, TaskId, wake_scheduler
from tme.controller.api.deps import RunId as VisibleRunId
from tme.controller.services import cancel as cancel_service
from tme.controller.services import device_check
from tme.controller.services import tasks as task_service
from tme.controller.services.access import site_scope, within_scope
from tme.controller.services.launch import launch_run
from tme.controller.services.policies import get_policy, schedule_changed
from tme.controller.services.queries import run_public, run_publics
from tme.controller.services.resources import list_resources
from tme.controller.services.workflow_cancel import going_in, no_workflow_run
from tme.controller.store.models import Run, Task
from tme.controller.store.workflow_models import RunLink, TaskPolicy, WorkflowCancel
from tme.schemas import (
    ResourcePublic,
    RunPublic,
    TaskPublic,
    TriggerFired,
    TriggerName,
    WorkflowCanceled,
)

router = APIRouter(prefix="/api/v1", tags=["run control"])

RUN_CONTROL: dict[str, Any] = {"x-permission": "run.control"}
TASK_READ: dict[str, Any] = {"x-permission": "task.read"}
RunId = Annotated[str, Path(min_length=1, max_length=64, description="The run's id")]
TriggerPath = Annotated[TriggerName, Path(description="The trigger's name")]


@router.post(
    "/tasks/{task_id}/run", status_code=201, response_model=RunPublic, openapi_extra=RUN_CONTROL
)
def run_now(
    task_id: TaskId, session: SessionDep, change: ChangeDep, on_run_ready: RunReadyDep
) -> RunPublic:
    task = task_service.get_task(session, task_id)
    run = launch_run(
        session, task, cause="manual", reason="run now", hook=on_run_ready, source="api"
    )
    answer = run_public(session, run)  # before the commit: nothing fails after it
    change.commit(201)
    return answer


@router.post(
    "/tasks/{task_id}/check", status_code=201, response_model=RunPublic, openapi_extra=RUN_CONTROL
)
def check_now(
    task_id: TaskId,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
) -> RunPublic:
    """Check the task against its machine now, without running it: a task `check <name>`
    (op device.check) whose agent answers what the task would do, or why it would be
    refused, and writes or sends nothing. Answers the check's run (docs/api.md,
    "Checking a task")."""
    task = task_service.get_task(session, task_id)
    check = device_check.check_task(session, task, principal.username, on_run_ready)
    run = session.get(Run, check.latest_run_id)
    assert run is not None  # started with the task
    answer = run_public(session, run)
    change.commit(201)
    return answer


def _set_paused(
    request: Request, session: Session, change: ChangeCommit, task_id: int, paused: bool
) -> TaskPublic:
    """Any task may be paused: a pause stops its trigger and its dependencies starting
    it as well as its schedule and its planned retries, so one without a schedule has
    something to stop too. Resume wakes the scheduling loop for the retries whose time
    came during the pause."""
    task = task_service.get_task(session, task_id)
    policy = get_policy(session, task)
    if policy.paused != paused:
        policy.paused = paused
        if task.schedule:
            # a resumed schedule owes nothing for the pause (a one-off its time, when it
            # came within its grace, unless it fired)
            schedule_changed(session, task, new=False)
    answer = task_service.to_public(task)
    change.commit(200)
    wake_scheduler(request, housekeeping=not paused)
    return answer


@router.post("/tasks/{task_id}/pause", response_model=TaskPublic, openapi_extra=RUN_CONTROL)
def pause(task_id: TaskId, request: Request, session: SessionDep, change: ChangeDep) -> TaskPublic:
    return _set_paused(request, session, change, task_id, True)


@router.post("/tasks/{task_id}/resume", response_model=TaskPublic, openapi_extra=RUN_CONTROL)
def resume(task_id: TaskId, request: Request, session: SessionDep, change: ChangeDep) -> TaskPublic:
    return _set_paused(request, session, change, task_id, False)


@router.post("/triggers/{name}", response_model=TriggerFired, openapi_extra=RUN_CONTROL)
def fire_trigger(
    name: TriggerPath,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
) -> TriggerFired:
    """Start every bound task the caller's grant reaches; a paused one, or one its overlap
    policy refuses, is recorded and answered as a skipped run saying why (as a refused
    schedule fire is). Trigger names are shared by all sites: a caller scoped to sites
    starts its sites' tasks only, so a task of another site bound to the same name can
    neither block nor ride along, and the answer tells nothing of tasks outside the
    grant (the same as for a name nothing is bound to)."""
    query = (
        select(Task)
        .join(TaskPolicy, col(TaskPolicy.task_id) == col(Task.id))
        .where(TaskPolicy.trigger == name)
    )
    bound = session.exec(within_scope(query, Task.site, principal).order_by(col(Task.id))).all()
    runs = [
        launch_run(
            session,
            task,
            cause="trigger",
            reason=f"trigger {name}",
            hook=on_run_ready,
            source="api",
        )
        for task in bound
    ]
    answer = TriggerFired(trigger=name, runs=run_publics(session, runs))
    change.commit(200)
    return answer


@router.post("/runs/{run_id}/cancel", response_model=RunPublic, openapi_extra=RUN_CONTROL)
def cancel(
    run_id: VisibleRunId,
    session: SessionDep,
    change: ChangeDep,
    force: Annotated[bool, Query(description="mark it canceled even if the agent is gone")] = False,
) -> RunPublic:
    run = cancel_service.cancel_run(session, run_id, force=force)
    answer = run_public(session, run)
    change.commit(200)
    return answer


@router.post(
    "/runs/{run_id}/retry", status_code=201, response_model=RunPublic, openapi_extra=RUN_CONTROL
)
def retry(
    run_id: VisibleRunId, session: SessionDep, change: ChangeDep, on_run_ready: RunReadyDep
) -> RunPublic:
    run = cancel_service.retry_run(session, run_id, on_run_ready)
    answer = run_public(session, run)
    change.commit(201)
    return answer


@router.get("/workflows/{workflow_id}", response_model=list[RunPublic], openapi_extra=TASK_READ)
def workflow_runs(
    workflow_id: RunId, session: SessionDep, principal: PrincipalDep
) -> list[RunPublic]:
    rows = session.exec(
        select(Run)
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(RunLink.workflow_id == workflow_id)
        .order_by(col(Run.created_at))
    ).all()
    # runs of tasks on sites outside the caller's grant are not theirs to see
    rows = [
        r for r in rows if principal.sees_site(getattr(session.get(Task, r.task_id), "site", None))
    ]
    if not rows:
        raise no_workflow_run(session, principal, workflow_id)
    return run_publics(session, rows)


@router.post(
    "/workflows/{workflow_id}/cancel", response_model=WorkflowCanceled, openapi_extra=RUN_CONTROL
)
def cancel_workflow(
    workflow_id: RunId,
    request: Request,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    force: Annotated[
        bool, Query(description="mark its runs canceled even if their agents are gone")
    ] = False,
) -> WorkflowCanceled:
    """Stop the workflow run: each run of it still going is canceled (as by its own
    cancel) and none of its steps starts or is retried afterwards, an `on: failure` or
    `on: any` one included: each is recorded skipped, saying who canceled it
    (docs/workflows.md, "Canceling a workflow run"). 409 when it is already over.
    The cancel is committed with its audit row (`details.runs`: its runs going then)
    before those runs are canceled, as the dashboard commits it."""

    def commit_cancel(cancel: WorkflowCancel) -> None:
        change.commit(200, runs=going_in(session, cancel.workflow_id))

    done = cancel_service.cancel_workflow(
        session, workflow_id, principal, force=force, commit=commit_cancel
    )
    answer = WorkflowCanceled(
        workflow_id=done.cancel.workflow_id,
        canceled_by=done.cancel.canceled_by,
        canceled_at=done.cancel.canceled_at,
        runs=run_publics(session, done.runs),
    )
    session.commit()  # its runs' cancels, which its row named
    wake_scheduler(request)  # its canceled runs settle, and its dependents are skipped, now
    return answer


@router.get("/resources", response_model=list[ResourcePublic], openapi_extra=TASK_READ)
def resources(session: SessionDep, principal: PrincipalDep) -> list[ResourcePublic]:
    """Every exclusive resource the caller's tasks name: the run holding it (none: it is
    free) and the runs waiting for it, next first."""
    return list_resources(session, site_scope(principal))
