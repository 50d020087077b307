"""Starting runs the way schedules, triggers, "run now" and workflows do.

`launch_run` applies the task's pause (for a start TME makes on its own) and overlap
policy (skip, queue, or allow up to N active runs), links the run to its workflow run
and hands it to the run-ready hook (which queues machine runs to the outbox). A run
that is not started is still recorded, as skipped with its reason or as waiting in
the overlap queue. A workflow step (workflow.py) is decided by the same `Room`, and an
automatic retry whose time came (retries.py) waits in the same overlap queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from tme.controller.services.policies import overlap_of
from tme.controller.services.runs import RunReadyHook, start_run, storable, transition
from tme.controller.store.db import remember_new
from tme.controller.store.models import Run, Task
from tme.controller.store.planner import rare
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import RunLink, TaskPolicy
from tme.schemas import Overlap
from tme.states import FINAL_STATES, RunState

# Listed, not "not final": `state IN (...)` can read ix_runs_state, where few runs are
# active; no index serves `NOT IN`, so PostgreSQL would read every run kept.
ACTIVE_VALUES = [s.value for s in RunState if s not in FINAL_STATES]


@dataclass(frozen=True)
class Latest:
    """A task's latest-run columns, put back when a recorded-only run must not replace them."""

    run_id: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> Latest:
        return cls(task.latest_run_id, task.status, task.started_at, task.finished_at)

    def restore(self, session: Session, task: Task) -> None:
        if self.run_id is None:
            return
        task.latest_run_id, task.status = self.run_id, self.status
        task.started_at, task.finished_at = self.started_at, self.finished_at
        session.add(task)


def link_run(session: Session, run: Run, *, cause: str, **placement: Any) -> RunLink:
    """Link `run` in this transaction; `placement` as `new_link` takes it."""
    link = new_link(run.id, run.created_at, cause=cause, **placement)
    session.add(link)
    remember_new(session, link.run_id, link)
    return link


def new_link(run_id: str, created_at: datetime, *, cause: str, **placement: Any) -> RunLink:
    """The link of a run (not added to any session), by the rules of `link_values`."""
    return RunLink(**link_values(run_id, created_at, cause=cause, **placement))


def link_values(
    run_id: str,
    created_at: datetime,
    *,
    cause: str,
    workflow_id: str | None = None,
    first_run_id: str | None = None,
    deadline_s: float | None = None,
    deadline_at: datetime | None = None,
) -> dict[str, Any]:
    """What a new link sets (the rest keeps its defaults): a run of its own workflow run
    and retry chain unless told otherwise, with its deadline from the run's creation."""
    if deadline_at is None and deadline_s:
        deadline_at = created_at + timedelta(seconds=deadline_s)
    return {
        "run_id": run_id,
        "workflow_id": workflow_id or run_id,
        "cause": cause,
        "first_run_id": first_run_id or run_id,
        "deadline_at": deadline_at,
    }


def active_runs(session: Session, task_id: int) -> list[Run]:
    return list(
        session.exec(
            select(Run)
            .where(Run.task_id == task_id, rare(col(Run.state).in_(ACTIVE_VALUES)))
            .order_by(col(Run.created_at))
        ).all()
    )


def record_skipped(session: Session, task: Task, reason: str, *, cause: str) -> Run:
    """A run that never starts, recorded with why; the task's latest run stays as it was."""
    latest = Latest.of(task)
    run = start_run(session, task, reason=reason, source="controller")
    link_run(session, run, cause=cause).settled = True
    transition(session, run, RunState.skipped, reason=reason)
    latest.restore(session, task)
    return run


# The task row, read with a lock (on SQLite the write gate): see `lock_launches`.
LOCK_TASK = (
    core_select(table_of(Task).c.id).where(table_of(Task).c.id == bindparam("id")).with_for_update()
)


def lock_launches(session: Session, task: Task) -> None:
    """Hold the task's row until this transaction ends, before its active runs are
    counted: a trigger and a schedule firing at once (or two "run now"s, or two workflow
    runs reaching one dependent) would each count none and both start, whatever the
    overlap policy. The second now waits for the first to commit and counts its run."""
    session.execute(LOCK_TASK, {"id": task.id})


# Causes of runs TME starts on its own: a paused task is started by none of them, only
# by hand ("run now", a retry asked for by hand).
AUTOMATIC = frozenset({"schedule", "trigger", "dependency"})
PAUSED = "skipped, task paused"


@dataclass(frozen=True)
class Room:
    """What a task's pause and overlap policy say to one more run of it, now.

    Read by `room_for` with the task's row locked, so it holds until the transaction
    that acts on it commits."""

    policy: TaskPolicy | None
    overlap: Overlap
    active: list[Run]  # the task's active runs, oldest first

    @property
    def deadline_s(self) -> float | None:
        return self.policy.deadline_s if self.policy else None

    @property
    def paused(self) -> bool:
        return self.policy is not None and self.policy.paused

    @property
    def allowed(self) -> int:
        """How many runs of the task may be active at once: `max` under allow, else one."""
        return self.overlap.max if self.overlap.policy == "allow" else 1

    def refusal(self, cause: str) -> str | None:
        """Why a run started by `cause` is not started at all (recorded as skipped), or
        None: its task is paused (for a start TME makes on its own), or the overlap
        policy skip, allow with `max` runs active, or queue with `max_queued` runs
        waiting (planned retries among them), leaves it no room."""
        if cause in AUTOMATIC and self.paused:
            return PAUSED
        if self.overlap.policy == "queue":
            waiting = sum(1 for run in self.active if run.state == RunState.waiting)
            if waiting < self.overlap.max_queued:
                return None
            return (
                f"skipped, the overlap queue is full ({waiting} runs waiting,"
                f" max_queued {self.overlap.max_queued})"
            )
        if len(self.active) < self.allowed:
            return None
        busy = self.active[-1]
        return f"skipped, run {busy.id} is still {busy.state} (overlap {self.overlap.policy})"

    @property
    def queues(self) -> Run | None:
        """The run a new one waits for in the overlap queue, or None: it starts now."""
        return self.active[-1] if self.active and self.overlap.policy == "queue" else None


def room_for(
    session: Session, task: Task, besides: str | None = None, *, locked: bool = True
) -> Room:
    """Lock the task's launches (`lock_launches`; not with `locked=False`, for a caller
    that holds the lock or only looks), then read its policy and active runs (`besides`:
    a run of its own that is not counted, the one being decided)."""
    if locked:
        lock_launches(session, task)
    policy = session.get(TaskPolicy, task.id)
    active = [r for r in active_runs(session, task.id or 0) if r.id != besides]
    return Room(policy, overlap_of(policy), active)


def hold(session: Session, run: Run, link: RunLink, busy: Run) -> None:
    """Put `run` in its task's overlap queue: waiting until `release_held` starts it."""
    link.held = True
    session.add(link)
    transition(
        session, run, RunState.waiting, reason=f"overlap queue: waiting for run {busy.id} to finish"
    )


def queue_ahead(session: Session, room: Room) -> Run | None:
    """The run a run of the overlap queue still waits for (the newest of the task's active
    runs outside the queue, while they fill the room its policy leaves: one under skip
    and queue, `max` under allow), or None: the queue may let one go now. A planned
    retry counts as active, as it does for any start (`Room.refusal`)."""
    outside = [run for run in room.active if held_link(session, run) is None]
    return outside[-1] if len(outside) >= room.allowed else None


def wait_in_queue(session: Session, run: Run, link: RunLink, reason: str) -> None:
    """Put a run already waiting (a retry: planned, or asked for by hand) in its task's
    overlap queue, saying why; it stays `waiting` (no transition) until the queue lets
    it go (`release_held`)."""
    link.held = True
    run.reason = storable(reason)
    session.add(link)
    session.add(run)


def launch_run(
    session: Session,
    task: Task,
    *,
    cause: str,
    reason: str,
    hook: RunReadyHook | None,
    source: str = "controller",
) -> Run:
    """Start a new workflow run of `task` now, as its pause and overlap policy allow."""
    room = room_for(session, task)
    refusal = room.refusal(cause)
    if refusal is not None:
        return record_skipped(session, task, f"{reason}: {refusal}", cause=cause)
    run = start_run(session, task, reason=reason, source=source)
    link = link_run(session, run, cause=cause, deadline_s=room.deadline_s)
    busy = room.queues
    if busy is not None:
        hold(session, run, link, busy)
        return run
    if hook is not None:
        hook(session, run, task)
    return run


def release_held(session: Session, task: Task, hook: RunReadyHook | None) -> Run | None:
    """Start the oldest run waiting in the task's overlap queue once the runs outside the
    queue leave room (`next_held`).

    The task's launches are locked first: a status report that released the run itself
    (status_report.py) is seen, not written over."""
    lock_launches(session, task)
    held = next_held(session, task)
    if held is None:
        return None
    return start_linked(session, held, task, hook, held=False, retry_at=None)


def next_held(session: Session, task: Task) -> Run | None:
    """The run the task's overlap queue lets go now, or None: its oldest, once the active
    runs outside the queue leave room (`queue_ahead`). A planned retry waiting there is
    passed over while its task is paused: the pause holds it, as it holds every planned
    retry (retries.start_due_retries starts it once the task is resumed)."""
    room = room_for(session, task, locked=False)
    queue = session.exec(
        select(Run, RunLink)
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(Run.task_id == task.id, col(RunLink.held), Run.state == RunState.waiting)
        .order_by(col(Run.created_at))
    ).all()
    held = next((r for r, link in queue if not (room.paused and link.retry_at is not None)), None)
    if held is None or queue_ahead(session, room) is not None:
        return None
    return held


def start_linked(
    session: Session, run: Run, task: Task, hook: RunReadyHook | None, **link_fields: Any
) -> Run:
    """Start a run that waited in its link (held in the overlap queue, or a retry planned
    for later): the link's fields set as given, then the run handed on (`hook`)."""
    link = session.get(RunLink, run.id)
    assert link is not None
    for name, value in link_fields.items():
        setattr(link, name, value)
    session.add(link)
    if hook is not None:
        hook(session, run, task)
    return run


def held_link(session: Session, run: Run) -> RunLink | None:
    """The run's link if the run is held in its task's overlap queue, else None."""
    link = session.get(RunLink, run.id)
    return link if link is not None and link.held else None
