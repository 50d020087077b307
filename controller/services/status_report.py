"""An external task's status report (`PATCH /api/v1/tasks/<id>` with `status`), and the
run it is about.

Whoever does an external task (a person, another system) reports without naming a
run. While the task has one active run that is the one; with several (runs behind it
in the overlap queue, runs side by side under overlap allow) the report is about the
oldest run it moves on, never one still held in the overlap queue: the report went to
the task's latest run, the newest, so a run queued behind was completed and the one in
progress stayed pending for ever.
"""

from __future__ import annotations

from sqlmodel import Session

from tme.controller.services import runs as run_service
from tme.controller.services.launch import active_runs, held_link, link_run, lock_launches
from tme.controller.services.resources import refuse_report_while_waiting
from tme.controller.store.models import Run, Task
from tme.errors import Conflict
from tme.schemas import TaskUpdate
from tme.states import RunState


def report_status(session: Session, task: Task, update: TaskUpdate) -> None:
    """Apply the report to its run (`reported_run`); `started` after the task's runs
    all finished starts a new one."""
    if task.op != "external":
        raise Conflict(
            f"the status of a {task.op} task is reported by its agent, not through the API",
            details={"task_id": task.id, "op": task.op},
        )
    state = update.run_state
    assert state is not None
    run = reported_run(session, task, state)
    if run is None or (RunState(run.state).is_final and state == RunState.running):
        attempt = 1 if run is None else run.attempt + 1
        run = run_service.start_run(
            session, task, reason="status report", source="api", attempt=attempt
        )
        # linked at once, as every start is: the sweep that settles final runs the
        # workflow cursor went by finds them by their links
        link_run(session, run, cause="manual")
    details = update.details
    reason = str(details.get("reason", "")) if details else ""
    run_service.transition(
        session,
        run,
        state,
        reason=reason or f"reported {update.status}",
        source="api",
        result=details,
    )
    if update.log:
        run_service.append_log(session, run, update.log)


def reported_run(session: Session, task: Task, state: RunState) -> Run | None:
    """The run a report of `state` is about: of the active runs outside the overlap
    queue, the oldest it moves on (`started`: the oldest not started yet; an outcome:
    the oldest started, else the oldest not started). With only held runs active, the
    oldest one, whose turn has come (nothing is ahead of it): it is released here, as
    the workflow pass would, unless it waits for an exclusive resource (Conflict).
    With no active run, the latest run.

    The task's launches are locked first, so a run started or released meanwhile (run
    now, the workflow pass) waits for this report, and is decided on what it wrote."""
    lock_launches(session, task)
    active = active_runs(session, task.id or 0)
    free = [run for run in active if held_link(session, run) is None]
    if free:
        started = [run for run in free if run.state == RunState.running]
        not_started = [run for run in free if run.state != RunState.running]
        return (not_started + started if state == RunState.running else started + not_started)[0]
    if active:
        oldest = active[0]
        refuse_report_while_waiting(session, oldest, task)
        link = held_link(session, oldest)
        assert link is not None
        link.held = False
        session.add(link)
        return oldest
    return session.get(Run, task.latest_run_id) if task.latest_run_id else None
