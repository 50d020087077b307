"""A workflow run canceled as a whole: the operator stops the sequence.

Canceling a workflow run (POST /api/v1/workflows/{id}/cancel, `tme run cancel
--workflow`, the dashboard's workflow page) cancels each of its runs still going, as
a cancel of that run does (services/cancel.py), and keeps a `workflow_cancels` row.
From then on none of its steps starts: each dependent the workflow engine decides
there is recorded `skipped`, "workflow run <id> canceled by <user>", whatever its
`on` (an `on: failure` alarm or an `on: any` clean-up included: the operator asked
for the sequence to stop, not for its failure path), and no run of it is retried,
automatically or by hand. Its runs already finished keep their outcome.

The row is written, with the workflow run's first run locked, in a transaction of its
own that commits before its runs are canceled; the workflow engine locks the same run
before it starts a step or plans a retry there and then reads the row. So a step it
starts at that moment is committed before the cancel reads the runs still going (and
is canceled with them), or the engine waits for the row and skips the step.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from tme.controller.services.roles import Principal
from tme.controller.services.workflow_graph import workflow_of, workflow_runs
from tme.controller.store.models import Run, Task
from tme.controller.store.workflow_models import RunLink, WorkflowCancel
from tme.errors import Conflict, Forbidden, NotFound
from tme.states import RunState


def stopped(session: Session, workflow_id: str, *, lock: bool = False) -> str | None:
    """Why no step of this workflow run may start or be retried (it was canceled as a
    whole), or None. With `lock`, its first run is locked first, so a cancel being
    recorded is waited for and then seen (see the module docstring). The lock is a key
    share on PostgreSQL: it waits for the cancel's lock only, never for a change of the
    run's state, nor another engine pass for it."""
    if lock:
        _lock_first_run(session, workflow_id, key_share=True)
    row = session.exec(
        select(WorkflowCancel)
        .where(WorkflowCancel.workflow_id == workflow_id)
        .execution_options(populate_existing=True)
    ).first()
    return None if row is None else f"workflow run {workflow_id} canceled by {row.canceled_by}"


def record_cancel(session: Session, workflow_id: str, principal: Principal) -> WorkflowCancel:
    """Record the cancel of the workflow run; the caller commits it before canceling its
    runs. 404 when no run of it is the principal's to see (naming the workflow run a
    step's run id is in), 403 when some run of it is on a site outside their grant, 409
    when it is over (every run final and its dependents decided)."""
    runs = (
        workflow_runs(session, workflow_id)
        if workflow_of(session, workflow_id) == workflow_id
        else []
    )
    sites = {t.id: t.site for t in _tasks_of(session, runs)}
    seen = [r for r in runs if principal.sees_site(sites.get(r.task_id))]
    if not seen:
        raise no_workflow_run(session, principal, workflow_id)
    if len(seen) < len(runs):
        raise Forbidden(
            f"workflow run {workflow_id} has runs on sites outside your grant: only a user"
            " who sees all of its sites can cancel it",
            details={"workflow_id": workflow_id},
        )
    earlier = session.get(WorkflowCancel, workflow_id)
    if _over(session, runs):
        said = f" (canceled by {earlier.canceled_by})" if earlier is not None else ""
        raise Conflict(
            f"workflow run {workflow_id} already finished{said}: every run of it is final and"
            " its dependents are decided; nothing was running, nothing to cancel",
            details={"workflow_id": workflow_id, "runs": len(runs)},
        )
    _lock_first_run(session, workflow_id, key_share=False)
    if earlier is not None:
        return earlier  # canceled before: its runs still going are canceled again
    cancel = WorkflowCancel(workflow_id=workflow_id, canceled_by=principal.username)
    session.add(cancel)
    return cancel


def no_workflow_run(session: Session, principal: Principal, workflow_id: str) -> NotFound:
    """The 404 of an id that is no workflow run's: one that is a run of another (a step's
    id, copied from a task's runs) names the workflow run that run is in."""
    message, details = f"workflow run {workflow_id} does not exist", {"workflow_id": workflow_id}
    link = session.get(RunLink, workflow_id)
    run = session.get(Run, workflow_id) if link is not None else None
    task = session.get(Task, run.task_id) if run is not None else None
    if link is not None and task is not None and principal.sees_site(task.site):
        message += f": run {workflow_id} is a step of workflow run {link.workflow_id}"
        details["run_workflow_id"] = link.workflow_id
    return NotFound(message, details=details)


def _lock_first_run(session: Session, workflow_id: str, *, key_share: bool) -> None:
    query = select(Run.id).where(Run.id == workflow_id)
    session.exec(query.with_for_update(read=key_share, key_share=key_share)).first()


def going_in(session: Session, workflow_id: str) -> list[str]:
    """The ids of the workflow run's runs not final yet, in id order (the order runs
    are locked in elsewhere)."""
    return sorted(r.id for r in workflow_runs(session, workflow_id) if not _final(r))


def _over(session: Session, runs: list[Run]) -> bool:
    if any(not _final(r) for r in runs):
        return False
    ids = [r.id for r in runs]
    unsettled = session.exec(
        select(RunLink.run_id).where(col(RunLink.run_id).in_(ids), col(RunLink.settled).is_(False))
    ).first()
    return unsettled is None


def _final(run: Run) -> bool:
    return RunState(run.state).is_final


def _tasks_of(session: Session, runs: list[Run]) -> list[Task]:
    ids = sorted({r.task_id for r in runs})
    return list(session.exec(select(Task).where(col(Task.id).in_(ids))).all())
