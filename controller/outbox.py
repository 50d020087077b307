"""Queue a machine run: move it to queued and write its command to the outbox.

Both happen in the caller's transaction, so a run is queued exactly when its
command is durably waiting to be published (the transactional outbox).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.services.runs import transition
from tme.controller.store.models import Outbox, Run, Task, utcnow
from tme.controller.wake_channel import OUTBOX, notify
from tme.protocol import Command
from tme.schemas import MACHINE_OPS
from tme.states import RunState

QUEUED_REASON = "waiting for dispatch"
REPORT_REASON = "ready: waiting for its status report"


class Wake(Protocol):
    """What a commit that wrote outbox rows rings: the dispatcher's wake."""

    def set(self) -> None: ...


class OutboxWake:
    """The wake of a controller's run-ready hooks: this controller's dispatcher, and,
    while this controller stands by (another one leads and publishes the outbox), the
    leader's, through the database (wake_channel)."""

    def __init__(self, engine: Engine, local: Wake, standby: Callable[[], bool]) -> None:
        self.engine, self.local, self.standby = engine, local, standby

    def set(self) -> None:
        self.local.set()
        if self.standby():
            notify(self.engine, OUTBOX)


class OutboxWriter:
    """The run-ready hook of the task service; wakes the dispatcher after commit."""

    def __init__(self, settings: Any, wake: Wake) -> None:
        self.default_timeout_s = float(settings.tasks.default_timeout_s)
        self.queue_timeout_s = float(settings.tasks.queue_timeout_s)
        self.wake = wake

    def __call__(self, session: Session, run: Run, task: Task) -> None:
        if not dispatched_to_agent(task):
            ready_for_report(session, run)
            return
        queue_run(session, run, task, self.default_timeout_s, self.queue_timeout_s)
        wake_after_commit(session, self.wake)


def wake_after_commit(session: Session, wake: Wake) -> None:
    """Wake the dispatcher once this transaction, which wrote outbox rows, commits."""
    event.listen(session, "after_commit", lambda _s: wake.set(), once=True)


# The dispatchers' wakes of the controllers running on each engine, for the writers of
# outbox rows that hold no run-ready hook (a cancel's stop request): without a wake,
# a stop request waited for the dispatcher's poll, up to a second, before leaving.
_WAKES: dict[Engine, list[Wake]] = {}
_WAKES_LOCK = threading.Lock()


def serve_wake(engine: Engine, wake: Wake) -> None:
    """Have `wake_dispatcher_after_commit` on `engine` ring `wake` (until `drop_wake`)."""
    with _WAKES_LOCK:
        _WAKES.setdefault(engine, []).append(wake)


def drop_wake(engine: Engine, wake: Wake) -> None:
    with _WAKES_LOCK:
        wakes = _WAKES.get(engine, [])
        if wake in wakes:
            wakes.remove(wake)
        if not wakes:
            _WAKES.pop(engine, None)


def wake_dispatcher_after_commit(session: Session) -> None:
    """Wake the dispatcher of each controller running on this session's engine once
    this transaction, which wrote outbox rows, commits (nothing without a controller:
    a script, a test)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _WAKES_LOCK:
        wakes = list(_WAKES.get(engine, ()))
    for wake in wakes:
        wake_after_commit(session, wake)


def queue_run(
    session: Session,
    run: Run,
    task: Task,
    default_timeout_s: float,
    queue_timeout_s: float,
    deadline_at: datetime | None = None,
) -> None:
    now = utcnow()
    run.not_after = not_after_of(now, queue_timeout_s, deadline_at)
    timeout_s = task.timeout_s or default_timeout_s
    command = command_of(run.id, run.attempt, task, timeout_s, run.not_after, deadline_at)
    transition(session, run, RunState.queued, reason=QUEUED_REASON, at=now)
    session.add(
        Outbox(
            run_id=run.id,
            site=command.site,
            body=command.to_json().decode(),
            priority=command.priority,
        )
    )


def not_after_of(now: datetime, queue_timeout_s: float, deadline_at: datetime | None) -> datetime:
    """When a command may no longer start: its queue timeout from now, or its run's total
    deadline when that comes first. The gateway expires a command it holds past this, and
    the agent refuses one that arrives later, so a run timed out by its deadline while its
    agent was away never reaches the machine afterwards."""
    not_after = now + timedelta(seconds=queue_timeout_s)
    return not_after if deadline_at is None else min(not_after, deadline_at)


def ready_for_report(session: Session, run: Run) -> None:
    """A run of an external task (reported through the API, not dispatched) handed on:
    a new one stays pending; one that waited (held in the overlap queue, a retry
    waiting for its time) is queued, ready for its reporter, as a machine run then is
    for the dispatcher. (It stayed `waiting`, as though still held; a run never moves
    back to `pending`.)"""
    if run.state == RunState.waiting:
        transition(session, run, RunState.queued, reason=REPORT_REASON)


def command_of(
    run_id: str,
    attempt: int,
    task: Task,
    timeout_s: float,
    not_after: datetime,
    deadline: datetime | None = None,
) -> Command:
    """The command of a run of `task` (which has its id by now), created now."""
    return Command(
        id=run_id,
        task_id=task.id or 0,
        attempt=attempt,
        site=task.site or "",
        agent=task.agent or "",
        device=task.device,
        op=task.op,
        params=task.params,
        cmd=task.cmd,
        timeout_s=timeout_s,
        not_after=not_after,
        deadline=deadline,
        priority=task.priority,
    )


def dispatched_to_agent(task: Task) -> bool:
    """Whether runs of `task` go to an agent; external tasks are reported through the API."""
    return task.op in MACHINE_OPS and bool(task.site) and bool(task.agent)
