"""Automatic retries: when a settled run is tried again, and how long to wait.

Retried on failed and timed_out, never on rejected (the agent refused it: trying
again changes nothing) nor on lost (the outcome is unknown). A write is retried
only when the agent reported that it never started it (refused before it ran, or
its device's connection or port could not be opened, so no frame went out),
because a second write after a half-done first one may harm the machine. The wait
grows exponentially with jitter up to a cap; a retry that could not start before
the task's total deadline is not planned. A retry whose time came waits while its
task is paused, or while the task's overlap policy leaves it no room (in the overlap
queue); past the task's total deadline a waiting retry is timed out (watchdog.py),
never started. A failed run of a task with retries that is not retried says why at
the end of its reason, so `retries: 2` that did nothing is explained.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from tme.controller.services.launch import (
    next_held,
    queue_ahead,
    release_held,
    room_for,
    start_linked,
    wait_in_queue,
)
from tme.controller.services.runs import RunReadyHook, chunks, start_run, storable, transition
from tme.controller.store.models import REASON_MAX, Run, Task, utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import RunLink, TaskPolicy
from tme.schemas import Retries
from tme.states import RunState

RETRY_ON = frozenset({RunState.failed, RunState.timed_out})
WRITE_OPS = frozenset({"modbus.write", "serial.command", "shell", "device.stop"})
# Put before why a failed run of a task with retries is not retried, after its reason.
NOT_RETRIED = "not retried: "
# Added to a due retry's reason while its task's pause holds it.
HELD_BY_PAUSE = "held while its task is paused: starts once it is resumed"
RUNS = table_of(Run)
# Due retries locked before they are decided, in id order (see `start_due_retries`).
LOCK_RUNS = (
    core_select(RUNS.c.id)
    .where(RUNS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(RUNS.c.id)
    .with_for_update()
)


def backoff_s(retries: Retries, attempt: int, rng: random.Random | None = None) -> float:
    """The wait before the retry that follows attempt `attempt` (1-based): never more
    than `backoff_max_s`, jitter included (waits at the cap are only spread downwards)."""
    base = min(retries.backoff_s * retries.factor ** (attempt - 1), retries.backoff_max_s)
    spread = (rng or random).uniform(-retries.jitter, retries.jitter)
    return min(max(0.0, base * (1 + spread)), retries.backoff_max_s)


def retry_refusal(task: Task, run: Run, link: RunLink, retries: Retries) -> str | None:
    """Why this run is not retried, or None when it is."""
    state = RunState(run.state)
    if state not in RETRY_ON:
        return f"not retried after {state.value}"
    if run.attempt > retries.max:
        return f"retries exhausted ({retries.max})"
    if task.op in WRITE_OPS and not link.not_started and not retries.repeatable:
        return (
            "a write is retried only when the agent reports it never started, "
            "and this one may have reached the device"
        )
    return None


def plan_retry(
    session: Session, task: Task, run: Run, link: RunLink, halted: str | None = None
) -> Run | None:
    """Plan the run's automatic retry, unless it is not retried (`halted`: its workflow
    run was canceled as a whole, why)."""
    retries = Retries.model_validate(task.retries or {})
    refusal = halted or retry_refusal(task, run, link, retries)
    if refusal is not None:
        _note_not_retried(session, run, retries, refusal)
        return None
    delay = backoff_s(retries, run.attempt)
    due = utcnow() + timedelta(seconds=delay)
    if link.deadline_at is not None and due > link.deadline_at:
        why = f"its retry would start after the task's deadline ({link.deadline_at.isoformat()})"
        _note_not_retried(session, run, retries, why)
        return None
    retry = start_run(
        session,
        task,
        reason=f"retry {run.attempt} of {retries.max} after {run.state}, in {delay:.2f} s",
        source="controller",
        attempt=run.attempt + 1,
    )
    session.add(
        RunLink(
            run_id=retry.id,
            workflow_id=link.workflow_id,
            cause="retry",
            first_run_id=link.first_run_id,
            deadline_at=link.deadline_at,
            retry_at=due,
        )
    )
    transition(
        session,
        retry,
        RunState.waiting,
        reason=f"retry {run.attempt} of {retries.max} in {delay:.2f} s, at {due.isoformat()}",
    )
    return retry


def _note_not_retried(session: Session, run: Run, retries: Retries, why: str) -> None:
    """Say on a failed or timed-out run of a task with retries why none follows (a run
    that succeeded, or of a task without retries, needs no word). Settling runs once
    per run and its reason no longer changes once it is final: written as it is."""
    if retries.max == 0 or RunState(run.state) not in RETRY_ON:
        return
    note = NOT_RETRIED + why
    kept = run.reason[: REASON_MAX - len(note) - 2]  # a long reason is cut, never the note
    run.reason = storable(f"{kept}; {note}" if kept else note)
    session.add(run)


def start_due_retries(session: Session, hook: RunReadyHook | None, now: datetime) -> int:
    """Start the planned retries whose time came, as their task allows; return how many
    were due.

    A retry is the rest of a failed attempt: nothing throws it away, it waits. A pause
    holds it, as it holds every start TME makes on its own: it stays waiting with its
    time kept (so resume starts it at once) and says so in its reason. While the task's
    other active runs fill the room its overlap policy leaves (one under skip and queue,
    `max` under allow), it waits in the task's overlap queue, saying for which run, and
    the queue lets it go (launch.release_held) once they finish: as a run of the task
    settles, or here. A retry by hand starts it sooner (`start_retry_by_hand`).

    Only the retries with something to do are locked, in id order (as the watchdog and
    the event consumer lock runs), each then with its task's launches (room_for), as a
    cancel or a retry by hand locks them; then all is read again, so a retry that a
    retry by hand, a cancel or the workflow pass moved meanwhile is seen as it is now,
    and is never handed on twice."""
    due = session.exec(
        select(RunLink.run_id, Run.task_id)
        .join(Run, col(Run.id) == col(RunLink.run_id))
        .where(col(RunLink.retry_at).is_not(None), col(RunLink.retry_at) <= now)
    ).all()
    moving = sorted(run_id for run_id, task_id in due if not _stays(session, run_id, task_id))
    for chunk in chunks(moving):
        session.execute(LOCK_RUNS, {"ids": chunk}).all()
    if moving:
        session.flush()
        session.expire_all()  # read again what the locks now hold
    for run_id in moving:
        _take_due(session, run_id, hook)
    return len(due)


def _stays(session: Session, run_id: str, task_id: int) -> bool:
    """Whether a due retry would stay as it is, read without a lock: held by its task's
    pause and saying so, or waiting in the overlap queue with the queue letting none go.
    Each pass looks again; only one with something to do takes the locks."""
    run, link = session.get(Run, run_id), session.get(RunLink, run_id)
    task = session.get(Task, task_id)
    if run is None or link is None or task is None:
        return True
    if run.state != RunState.waiting:
        return False  # its plan is cleared
    policy = session.get(TaskPolicy, task_id)
    if policy is not None and policy.paused:
        return run.reason.endswith(HELD_BY_PAUSE)
    return link.held and next_held(session, task) is None


def _take_due(session: Session, run_id: str, hook: RunReadyHook | None) -> None:
    """Start one due retry, its run locked, or say why it waits (`start_due_retries`)."""
    run, link = session.get(Run, run_id), session.get(RunLink, run_id)
    if run is None or link is None or link.retry_at is None:
        return  # started by hand, or canceled, since the pass read it
    task = session.get(Task, run.task_id)
    if run.state != RunState.waiting or task is None:
        link.retry_at = None  # it went another way (a deadline): nothing to start
        session.add(link)
        return
    room = room_for(session, task, besides=run.id)
    if room.paused:
        _note(session, run, HELD_BY_PAUSE)
    elif link.held:
        release_held(session, task, hook)  # the oldest in the queue goes first
    elif (busy := queue_ahead(session, room)) is not None:
        waits = f"due: waiting for run {busy.id} to finish (overlap {room.overlap.policy})"
        wait_in_queue(session, run, link, _noted(run.reason, waits))
    else:
        start_linked(session, run, task, hook, retry_at=None)


def start_retry_by_hand(
    session: Session, run: Run, task: Task, hook: RunReadyHook | None, reason: str
) -> Run:
    """Start a planned retry now, asked for by hand (cancel.retry_run, with the run
    locked): whatever its time and its task's pause, as the overlap policy allows. While
    the task's other active runs fill the room it waits in the overlap queue instead,
    for the run still going, as a start by hand (the pause does not hold it): it is
    never a second run at once beside one the policy does not allow."""
    room = room_for(session, task, besides=run.id)
    link = session.get(RunLink, run.id)
    assert link is not None
    busy = queue_ahead(session, room)
    if busy is None:
        return start_linked(session, run, task, hook, retry_at=None, held=False)
    link.retry_at = None  # no longer planned: asked for by hand
    waits = f"{reason}: waiting for run {busy.id} to finish (overlap {room.overlap.policy})"
    wait_in_queue(session, run, link, waits)
    return run


def _noted(reason: str, note: str) -> str:
    """A planned retry's reason (`plan_retry`'s, which has no '; ') with `note` after it
    in place of any note before."""
    base = reason.split("; ", 1)[0]
    return f"{base}; {note}" if base else note


def _note(session: Session, run: Run, note: str) -> None:
    """Say on the run why it waits (no transition: it stays waiting), once."""
    if not run.reason.endswith(note):
        run.reason = storable(_noted(run.reason, note))
        session.add(run)
