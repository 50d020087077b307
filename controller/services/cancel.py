"""Cancel a run, and retry a settled one by hand.

A run not yet handed to the broker is canceled at once (its outbox row is
withdrawn). A run already on its way is asked to stop: a cancel command follows
the same path (outbox, broker, gateway, agent), and the agent stops the operation
and reports `canceled`. `force` marks it canceled at once even if the agent is
gone; the stop request still goes out. A run of a task without an agent (an
external task, reported by a person or another system) has nobody to ask: it is
canceled at once. A workflow run is canceled as a whole by canceling each of its runs
still going this way, once its cancel is recorded (services/workflow_cancel.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from tme.controller.outbox import wake_dispatcher_after_commit
from tme.controller.retries import start_retry_by_hand
from tme.controller.services.launch import hold, link_run, record_skipped, room_for
from tme.controller.services.roles import Principal
from tme.controller.services.runs import RunReadyHook, start_run, transition
from tme.controller.services.workflow_cancel import going_in, record_cancel, stopped
from tme.controller.store.models import Outbox, Run, Task, utcnow
from tme.controller.store.workflow_models import RunLink, WorkflowCancel
from tme.errors import Conflict, NotFound
from tme.protocol import MAX_PRIORITY, Command
from tme.states import RunState

BEFORE_BROKER = frozenset({RunState.pending, RunState.waiting, RunState.queued})
NO_AGENT = "canceled at once: its task has no agent to ask (a person or system reports it)"
CANCEL_TTL_S = 300.0  # a stop request older than this is pointless: the run timed out by then
CANCEL_OP = "cancel"  # the op of a stop request, which names its run in params.command_id


def get_run(session: Session, run_id: str) -> Run:
    """The run, locked for this transaction: what is decided from its state is written
    before an agent's answer can change it (that answer waits, then applies to what
    was written: a final state stays final)."""
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", details={"run_id": run_id})
    return run


def cancel_run(session: Session, run_id: str, *, force: bool = False, why: str = "") -> Run:
    """Cancel the run, or ask its agent to stop it; `why` goes before the reason of the
    cancel (a workflow run canceled as a whole says so)."""
    run = get_run(session, run_id)
    state = RunState(run.state)
    if state.is_final:
        raise Conflict(
            f"run {run_id} already finished ({state.value}); nothing to cancel",
            details={"run_id": run_id, "state": state.value},
        )
    task = session.get(Task, run.task_id)
    rows = list(session.exec(select(Outbox).where(Outbox.run_id == run_id)).all())
    now = utcnow()
    for row in rows:
        if row.published_at is None:
            row.published_at, row.last_error = now, "canceled before dispatch"
            session.add(row)
    link = session.get(RunLink, run_id) or link_run(session, run, cause="manual")
    # One stop request per run while it lives: a cancel sent again (a script retrying, a
    # second person) sent the agent another one each time, each answered on its own.
    asked = link.cancel_requested_at
    on_its_way = asked is not None and now - asked < timedelta(seconds=CANCEL_TTL_S)
    if not on_its_way:
        link.cancel_requested_at = now
    link.retry_at = None
    session.add(link)
    if rows and task is not None and task.site and task.agent and not on_its_way:
        session.add(_stop_request(run, task))
        wake_dispatcher_after_commit(session)
    reason = None
    if state in BEFORE_BROKER:
        reason = "canceled before dispatch"
    elif task is None or not task.agent:
        reason = NO_AGENT
    elif force:
        reason = "force-canceled; the agent was asked to stop but may not have answered"
    if reason is not None:
        reason = f"{why}: {reason}" if why else reason
        transition(session, run, RunState.canceled, reason=reason, source="api")
    return run


@dataclass
class WorkflowCanceled:
    """A workflow run canceled as a whole: its cancel and the runs it canceled or asked
    to stop (as they are after it)."""

    cancel: WorkflowCancel
    runs: list[Run]


def cancel_workflow(
    session: Session,
    run_id: str,
    principal: Principal,
    *,
    force: bool = False,
    commit: Callable[[WorkflowCancel], None] | None = None,
) -> WorkflowCanceled:
    """Cancel the workflow run `run_id` belongs to: record its cancel and commit it (so no
    step of it starts from then on: services/workflow_cancel.py), with `commit` when
    given (the dashboard commits its audit row with it), then cancel each run of it still
    going as `cancel_run` does; the caller commits that."""
    cancel = record_cancel(session, run_id, principal)
    if commit is None:
        session.commit()
    else:
        commit(cancel)
    why = f"workflow run {cancel.workflow_id} canceled by {cancel.canceled_by}"
    runs = []
    for going in going_in(session, cancel.workflow_id):
        run = get_run(session, going)
        if not RunState(run.state).is_final:  # it may have finished since it was read
            runs.append(cancel_run(session, going, force=force, why=why))
    return WorkflowCanceled(cancel, runs)


def _stop_request(run: Run, task: Task) -> Outbox:
    now = utcnow()
    command = Command(
        task_id=task.id or 0,
        attempt=run.attempt,
        site=task.site or "",
        agent=task.agent or "",
        op=CANCEL_OP,
        params={"command_id": run.id},
        timeout_s=5.0,
        not_after=now + timedelta(seconds=CANCEL_TTL_S),
        created_at=now,
        # Not a run waiting its turn: it stops one, so it goes before any backlog.
        priority=MAX_PRIORITY,
    )
    return Outbox(
        run_id=command.id,
        site=command.site,
        body=command.to_json().decode(),
        priority=command.priority,
    )


def retry_run(session: Session, run_id: str, hook: RunReadyHook | None) -> Run:
    """Run a settled step again in its workflow run; its dependents follow from there.

    A retry by hand is a start by hand, as "run now" is: the task's overlap policy
    applies (launch.Room, with the task's launches locked) and its pause does not. One
    the policy refuses is recorded as a skipped run saying why, outside the workflow run
    (whose step keeps its outcome, to retry once the other run is done); one the overlap
    queue holds waits there, in the workflow run, for the run before it. A retry asked
    for while an automatic one is planned starts that one now instead, or has it wait in
    the overlap queue for the run going on (retries.start_retry_by_hand)."""
    run = get_run(session, run_id)
    if not RunState(run.state).is_final:
        raise Conflict(
            f"run {run_id} is still {run.state}; retry it once it has finished",
            details={"run_id": run_id, "state": run.state},
        )
    task = session.get(Task, run.task_id)
    if task is None:
        raise NotFound(f"task {run.task_id} does not exist", details={"task_id": run.task_id})
    link = session.get(RunLink, run.id)
    halted = stopped(session, link.workflow_id if link else run.id)
    if halted is not None:
        raise Conflict(
            f"{halted}: none of its runs is run again (`run now` starts the task in a new"
            " workflow run)",
            details={"run_id": run_id, "workflow_id": link.workflow_id if link else run.id},
        )
    reason = f"retry of run {run.id} requested"
    planned = _planned_retry(session, link)
    if planned is not None:
        # A retry asked for while one is planned starts the planned one now: a second
        # run beside it would run the step twice (a machine would do the work twice).
        return start_retry_by_hand(session, planned, task, hook, reason)
    room = room_for(session, task)
    refusal = room.refusal("manual")  # by hand: a pause does not hold it
    if refusal is not None:
        return record_skipped(session, task, f"{reason}: {refusal}", cause="retry")
    latest = session.exec(
        select(Run.attempt).where(Run.task_id == run.task_id).order_by(col(Run.attempt).desc())
    ).first()
    retry = start_run(
        session, task, reason=reason, source="api", attempt=(latest or run.attempt) + 1
    )
    retry_link = link_run(
        session,
        retry,
        cause="retry",
        workflow_id=link.workflow_id if link else run.id,
        first_run_id=link.first_run_id if link else run.id,
    )
    busy = room.queues
    if busy is not None:
        hold(session, retry, retry_link, busy)
    elif hook is not None:
        hook(session, retry, task)
    return retry


def _planned_retry(session: Session, link: RunLink | None) -> Run | None:
    """The automatic retry of this run's chain still planned (waiting out its backoff, or
    due and held by a pause or the overlap queue), if any, locked and read as it is now:
    the scheduling pass locks it too before it starts it (retries.start_due_retries), so
    one of the two starts it, and the other sees it started. Locked before the task's
    launches, in the order that pass, a cancel and the event consumer take them."""
    if link is None:
        return None
    return session.exec(
        select(Run)
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(
            RunLink.first_run_id == link.first_run_id,
            col(RunLink.retry_at).is_not(None),
            Run.state == RunState.waiting,
        )
        .with_for_update(of=Run)
        .execution_options(populate_existing=True)
    ).first()
