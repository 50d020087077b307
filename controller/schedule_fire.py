"""What happens when a schedule fires: every slot due by now is handled exactly once.

APScheduler calls `fire_scheduled` (by its "module:function" reference, so jobs
pickle) with coalesce on and no misfire limit, so after any delay or restart it
runs once; this module then accounts for every slot since the last one handled:

- at most one run starts per call, so a restart never bursts;
- the newest slot within the misfire grace fires; older ones are recorded as
  skipped runs ("superseded");
- slots beyond the grace are recorded as skipped runs with the reason, except that
  the misfire policy run_once fires the newest of them when nothing else fired.

Each handled slot is a `schedule_slots` row keyed by (task, slot): a slot handled
twice (two schedulers, a replayed job) fails the transaction instead of running twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tme.controller.sched_triggers import ON_TIME_S, build_trigger, owed_after, slots_between
from tme.controller.scheduler_lease import Lease
from tme.controller.services.launch import launch_run, record_skipped
from tme.controller.services.policies import get_policy, misfire_of
from tme.controller.services.runs import RunReadyHook
from tme.controller.store.db import session_scope
from tme.controller.store.models import Task, utcnow
from tme.controller.store.workflow_models import ScheduleSlot

log = logging.getLogger("tme.scheduler")

JOB_FUNCTION = "tme.controller.schedule_fire:fire_scheduled"
# Missed slots recorded one by one after a long outage; older ones share one record
# that says how many and between which times (an every-second schedule down for a
# day must not write 86,400 rows at start-up).
MAX_MISSED_RECORDS = 100


@dataclass
class FireContext:
    engine: Engine
    hook: RunReadyHook | None
    lease: Lease
    # Drops the job of a task found deleted (ScheduleKeeper.forget): the keeper follows
    # schedule changes, and a deleted task leaves none, so its job would fire for ever.
    forget: Callable[[int], None] | None = None


_contexts: dict[str, FireContext] = {}


def register(key: str, context: FireContext) -> None:
    _contexts[key] = context


def unregister(key: str, context: FireContext) -> None:
    if _contexts.get(key) is context:
        del _contexts[key]


def fire_scheduled(key: str, task_id: int) -> None:
    """The APScheduler job of a scheduled task."""
    context = _contexts.get(key)
    if context is None:
        log.warning("schedule of task %s fired with no scheduler active here; ignored", task_id)
        return
    try:
        with session_scope(context.engine) as session:
            if not context.lease.held_in(session):
                log.warning("schedule of task %s fired without the lease; ignored", task_id)
                return
            handle_due_slots(session, task_id, utcnow(), context.hook)
            gone = session.get(Task, task_id) is None  # loaded by now, unless deleted
    except IntegrityError:
        log.warning("a slot of task %s was already handled elsewhere; not fired again", task_id)
        return
    if gone and context.forget is not None:
        log.info("task %s was deleted; its schedule is dropped", task_id)
        context.forget(task_id)


def handle_due_slots(
    session: Session, task_id: int, now: datetime, hook: RunReadyHook | None
) -> int:
    """Fire or record every slot of the task due by `now`; return how many runs started.

    The task's row is locked first, as an edit of the task locks it before its policy:
    a fire that locked the policy first and an edit at the same moment would deadlock
    (on PostgreSQL one fails: the edit answers 500, or the slot is lost)."""
    task = session.get(Task, task_id, with_for_update=True)
    if task is None or not task.schedule:
        return 0
    policy = get_policy(session, task)
    if policy.paused:
        return 0
    misfire = misfire_of(task, policy)
    grace_s = max(misfire.grace_s, ON_TIME_S)
    changed = policy.schedule_changed_at
    if policy.last_slot_at is not None:
        after = max(policy.last_slot_at, changed)
    else:
        after = owed_after(task.schedule, changed, grace_s)
    trigger = build_trigger(task.schedule, changed)
    recent: deque[datetime] = deque(maxlen=MAX_MISSED_RECORDS)
    older = 0
    for slot in slots_between(trigger, after, now):
        if len(recent) == recent.maxlen:
            older += 1
        recent.append(slot)
    if not recent:
        return 0
    policy.last_slot_at = recent[-1]
    session.add(policy)
    timely = [s for s in recent if (now - s).total_seconds() <= grace_s]
    fire = timely[-1] if timely else None
    if fire is None and misfire.policy == "run_once":
        fire = recent[-1]
    if older:
        _record_older(session, task, older, after, recent[0])
    for slot in recent:
        if slot != fire:
            _record_missed(session, task, slot, now, grace_s, superseded=fire)
    if fire is None:
        return 0
    late = (now - fire).total_seconds()
    reason = f"schedule slot {fire.isoformat()}"
    if late > grace_s:
        reason += f" fired {late:.0f} s late (misfire policy run_once)"
    run = launch_run(session, task, cause="schedule", reason=reason, hook=hook)
    session.add(ScheduleSlot(task_id=task_id, slot_at=fire, run_id=run.id, outcome=run.state))
    session.flush()
    return 1


def _record_missed(
    session: Session,
    task: Task,
    slot: datetime,
    now: datetime,
    grace_s: float,
    superseded: datetime | None,
) -> None:
    late = (now - slot).total_seconds()
    if late <= grace_s and superseded is not None:
        why = f"superseded by the later slot {superseded.isoformat()} (one run per fire)"
    else:
        why = f"{late:.0f} s late, beyond the misfire grace of {grace_s:g} s"
    reason = f"missed schedule slot {slot.isoformat()}: {why}"
    run = record_skipped(session, task, reason, cause="schedule")
    session.add(ScheduleSlot(task_id=task.id or 0, slot_at=slot, run_id=run.id, outcome="missed"))


def _record_older(
    session: Session, task: Task, count: int, after: datetime, before: datetime
) -> None:
    reason = (
        f"missed {count} schedule slots between {after.isoformat()} and {before.isoformat()}"
        " (controller not scheduling); each is summarised in this one record"
    )
    record_skipped(session, task, reason, cause="schedule")
