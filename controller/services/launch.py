"""Starting runs the way schedules, triggers, "run now" and workflows do.

`launch_run` applies the task's pause (for a start TME makes on its own) and overlap
policy (skip, queue, or allow up to N active runs), links the run to its workflow run
and hands it to the run-ready hook (which queues machine runs to the outbox). A run
that is not started is still recorded, as skipped with its reason or as waiting in
the overlap queue. A workflow step (workflow.py) is decided by the same `Room`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from tme.controller.services.policies import overlap_of
from tme.controller.services.runs import RunReadyHook, start_run, transition
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

    def refusal(self, cause: str) -> str | None:
        """Why a run started by `cause` is not started at all (recorded as skipped), or
        None: its task is paused (for a start TME makes on its own), or the overlap
        policy skip, or allow with `max` runs active, leaves it no room."""
        if cause in AUTOMATIC and self.policy is not None and self.policy.paused:
            return PAUSED
        allowed = self.overlap.max if self.overlap.policy == "allow" else 1
        if len(self.active) < allowed or self.overlap.policy == "queue":
            return None
        busy = self.active[-1]
        return f"skipped, run {busy.id} is still {busy.state} (overlap {self.overlap.policy})"

    @property
    def queues(self) -> Run | None:
        """The run a new one waits for in the overlap queue, or None: it starts now."""
        return self.active[-1] if self.active and self.overlap.policy == "queue" else None


def room_for(session: Session, task: Task, besides: str | None = None) -> Room:
    """Lock the task's launches (`lock_launches`), then read its policy and active runs
    (`besides`: a run of its own that is not counted, the one being decided)."""
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
    """Start the oldest run waiting in the task's overlap queue once nothing else is active.

    The task's launches are locked first: a status report that released the run itself
    (status_report.py) is seen, not written over."""
    lock_launches(session, task)
    held = session.exec(
        select(Run)
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(Run.task_id == task.id, col(RunLink.held), Run.state == RunState.waiting)
        .order_by(col(Run.created_at))
    ).first()
    if held is None:
        return None
    others = [r for r in active_runs(session, task.id or 0) if r.id != held.id]
    if any(held_link(session, r) is None for r in others):
        return None
    return start_linked(session, held, task, hook, held=False)


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
