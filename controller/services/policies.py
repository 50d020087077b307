"""A task's scheduling policy: misfire, overlap, trigger, timeouts, pause; and its defaults.

Stored in `task_policies` beside the task. A machine task's default misfire policy
is skip (a pump must not start hours late); other tasks run once when late.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import object_session
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from tme.controller.sched_triggers import ON_TIME_S, build_trigger, next_fire_times, owed_after
from tme.controller.store.db import remember_new
from tme.controller.store.models import Task, utcnow
from tme.controller.store.workflow_models import TaskPolicy
from tme.schemas import MACHINE_OPS, Misfire, Overlap, TaskCreate

POLICY_FIELDS = ("misfire", "overlap", "trigger", "queue_timeout_s", "deadline_s")
NEXT_FIRE_COUNT = 3
# The schedule stamp of a task that never had a schedule. Stamps are the scheduler's
# change stream (ScheduleKeeper reads those past the last it saw, and a window behind
# it); most tasks are one-offs without a schedule, and stamped "now" each of them would
# be read there, thousands a second in a burst. A schedule set later is stamped then.
NOT_SCHEDULED = datetime(1970, 1, 1, tzinfo=UTC)


def default_misfire(op: str) -> Misfire:
    return Misfire(policy="skip" if op in MACHINE_OPS else "run_once")


def misfire_of(task: Task, policy: TaskPolicy | None) -> Misfire:
    if policy is not None and policy.misfire:
        return Misfire.model_validate(policy.misfire)
    return default_misfire(task.op)


def overlap_of(policy: TaskPolicy | None) -> Overlap:
    if policy is not None and policy.overlap:
        return Overlap.model_validate(policy.overlap)
    return Overlap()


def get_policy(session: Session, task: Task) -> TaskPolicy:
    """The task's policy row, created on first use (tasks made before it existed)."""
    policy = session.get(TaskPolicy, task.id)
    if policy is None:
        changed = task.created_at if task.schedule else NOT_SCHEDULED
        policy = TaskPolicy(task_id=task.id or 0, schedule_changed_at=changed)
        session.add(policy)
        remember_new(session, policy.task_id, policy)  # later lookups in this session find it
    return policy


def store_policy(session: Session, task: Task, data: TaskCreate) -> TaskPolicy:
    """The policy row of a task just created (none exists yet: no lookup)."""
    policy = new_policy(task.id or 0, data)
    session.add(policy)
    remember_new(session, policy.task_id, policy)
    return policy


def new_policy(task_id: int, data: TaskCreate) -> TaskPolicy:
    """The policy of a task being created (not added to any session)."""
    changed = utcnow() if data.schedule else NOT_SCHEDULED
    policy = TaskPolicy(task_id=task_id, schedule_changed_at=changed)
    _set_fields(policy, {k: getattr(data, k) for k in POLICY_FIELDS})
    return policy


def apply_policy_changes(
    session: Session, task: Task, changes: dict[str, Any], policy: TaskPolicy | None = None
) -> None:
    """Write changed policy fields (models are stored as JSON)."""
    policy = policy if policy is not None else get_policy(session, task)
    _set_fields(policy, changes)
    session.add(policy)


def _set_fields(policy: TaskPolicy, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key in ("misfire", "overlap"):
            value = value.model_dump() if value is not None else None
        setattr(policy, key, value)


def schedule_changed(session: Session, task: Task, *, new: bool = True) -> None:
    """Slots before now are not owed; the scheduler picks the change up. A `new` schedule
    (set by a change) has handled no slot yet; a paused or resumed one keeps the slot it
    handled last, so a one-off that fired is not owed again."""
    policy = get_policy(session, task)
    policy.schedule_changed_at = utcnow()
    if new:
        policy.last_slot_at = None
    session.add(policy)


def policies_of(session: Session, task_ids: Iterable[int]) -> dict[int, TaskPolicy]:
    """The policies of these tasks in one query (a task without one is absent): a page of
    100 tasks read its policies one SELECT at a time, and so did a group of creates."""
    ids = list(task_ids)
    found: dict[int, TaskPolicy] = {}
    for task_id in ids:  # those this session holds already (a create's): no query
        held = session.identity_map.get(identity_key(TaskPolicy, task_id))
        if held is not None:
            found[task_id] = held
    missing = [task_id for task_id in ids if task_id not in found]
    if missing:
        rows = session.exec(select(TaskPolicy).where(col(TaskPolicy.task_id).in_(missing)))
        found.update((policy.task_id, policy) for policy in rows)
    return found


def policy_of(task: Task) -> TaskPolicy | None:
    session = object_session(task)
    return session.get(TaskPolicy, task.id) if session is not None else None


def public_fields(
    task: Task, policy: TaskPolicy | None, now: datetime | None = None
) -> dict[str, Any]:
    """The policy fields of TaskPublic, with the next fire times of an active schedule."""
    fields: dict[str, Any] = {
        "misfire": misfire_of(task, policy),
        "overlap": overlap_of(policy),
        "paused": bool(policy and policy.paused),
    }
    if policy is not None:
        fields.update(
            trigger=policy.trigger,
            queue_timeout_s=policy.queue_timeout_s,
            deadline_s=policy.deadline_s,
        )
    if task.schedule and not fields["paused"]:
        anchor = policy.schedule_changed_at if policy else task.created_at
        now = now or utcnow()
        after = max(filter(None, [now, policy.last_slot_at if policy else None]))
        try:
            trigger = build_trigger(task.schedule, anchor)
        except (ValueError, KeyError, OverflowError):  # stored before a check refused it
            return fields  # no fire times: the scheduler cannot fire it either
        if policy is not None and policy.last_slot_at is None:
            after = min(after, _one_off_due(task.schedule, anchor, now, fields["misfire"]))
        fields["next_fire_times"] = next_fire_times(trigger, after, NEXT_FIRE_COUNT)
    return fields


def _one_off_due(
    schedule: dict[str, Any], anchor: datetime, now: datetime, misfire: Misfire
) -> datetime:
    """Where a one-off's fire times start: before its time when that came at most its
    grace before it was set or resumed, and it still fires (at once: the scheduler's
    next look), so its time is the next fire, not none; else `now`."""
    if schedule.get("cron") or schedule.get("every_s"):
        return now  # their slots come after the anchor, each fired on time
    grace_s = max(misfire.grace_s, ON_TIME_S)
    owed = owed_after(schedule, anchor, grace_s)
    if owed >= now:
        return now
    fires = misfire.policy == "run_once" or (now - owed).total_seconds() <= grace_s
    return owed if fires else now
