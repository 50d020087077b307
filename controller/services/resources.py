"""Exclusive resources: at most one active run among all the tasks naming a resource.

A task names the physical things its runs must have to themselves (`resources`: a
tank, a cell, an RS-485 line), whatever task, agent or site the other runs belong to.
A run about to be handed on (the run-ready hook: a create, "run now", a schedule, a
trigger, a workflow step, a retry) whose resource another active run holds waits
instead, held in its task's overlap queue, saying which run holds it. So does one
while a run that goes before it waits for one of its resources: runs waiting go by
their task's priority, higher first, and equal priorities first come, first served.
When a run of a task naming resources settles (workflow.settle_run), the runs waiting
for those resources are tried again in that order.

The check and the start happen under a lock per resource (PostgreSQL: an advisory
lock held to the end of the transaction; SQLite: the write gate), so two starts at
once never both find a resource free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, or_, text
from sqlmodel import Session, col, select

from tme.controller.services.launch import lock_launches, release_held
from tme.controller.services.runs import RunReadyHook, storable, transition
from tme.controller.store.models import Run, Task, TaskResource
from tme.controller.store.planner import rare
from tme.controller.store.workflow_models import RunLink
from tme.errors import Conflict
from tme.schemas import ResourcePublic, ResourceRun
from tme.states import ACTIVE_ORDER, RunState

# A run holds its task's resources from its start to its final state: every active
# state but waiting (not started: a dependency, a planned retry, a queue).
HOLDING_VALUES = [s.value for s in ACTIVE_ORDER if s != RunState.waiting]
WAITING = "waiting for resource "  # how the reason of a run waiting for one begins
# The advisory locks' keys are taken from the name, under a prefix of TME's own.
_KEY_PREFIX = b"tme.resource:"


def store_resources(session: Session, task: Task, names: list[str]) -> None:
    """Set the resources a task names: its column and its rows of task_resources."""
    if task.id is not None and task.resources:
        session.execute(delete(TaskResource).where(col(TaskResource.task_id) == task.id))
    task.resources = list(names)
    session.add(task)
    for name in names:
        session.add(TaskResource(task_id=task.id or 0, resource=name))


def lock_resources(session: Session, names: Iterable[str]) -> None:
    """Hold these resources until the transaction ends, in name order (two transactions
    locking two of them never wait for each other crosswise)."""
    ordered = sorted(set(names))
    if not ordered:
        return
    if session.get_bind().dialect.name == "postgresql":
        for name in ordered:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(name)})
        return
    # SQLite: a locking read takes the write gate (store/sqlite_gate.py), one writer.
    session.execute(
        select(TaskResource.task_id)
        .where(col(TaskResource.resource).in_(ordered))
        .limit(1)
        .with_for_update()
    ).all()


def _key(name: str) -> int:
    digest = hashlib.sha256(_KEY_PREFIX + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _first_holder(session: Session, names: list[str], besides: Any) -> Any:
    """The oldest active run holding one of `names` that matches `besides` (a condition
    leaving the asking run or task out), with the resource: (run, name), or None."""
    return session.exec(
        select(Run, TaskResource.resource)
        .join(TaskResource, col(TaskResource.task_id) == col(Run.task_id))
        .where(col(TaskResource.resource).in_(names), rare(col(Run.state).in_(HOLDING_VALUES)))
        .where(besides)
        .order_by(col(Run.created_at))
        .limit(1)
    ).first()


def _held_waiting(query: Any, names: list[str]) -> Any:
    """`query` (of runs) narrowed to the runs waiting, held in their queue, of the tasks
    naming one of `names`."""
    return (
        query.join(TaskResource, col(TaskResource.task_id) == col(Run.task_id))
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(
            col(TaskResource.resource).in_(names),
            col(RunLink.held),
            Run.state == RunState.waiting,
        )
    )


def why_waits(session: Session, run: Run, names: list[str], priority: int) -> str | None:
    """Why `run` (of a task of `priority`) may not start now, or None: another active run
    holds one of `names`, or a run that goes before it waits for one of them (of a task
    of higher priority, or of the same priority and older)."""
    held = _first_holder(session, names, col(Run.id) != run.id)
    if held is not None:
        holder, name = held
        return f"{WAITING}{name}, held by run {holder.id} of task {_named(session, holder)}"
    ahead = session.exec(
        _held_waiting(select(Run, TaskResource.resource), names)
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(
            col(Run.reason).startswith(WAITING),
            or_(
                col(Task.priority) > priority,
                and_(col(Task.priority) == priority, col(Run.created_at) < run.created_at),
            ),
            col(Run.id) != run.id,
        )
        .order_by(col(Task.priority).desc(), col(Run.created_at))
        .limit(1)
    ).first()
    if ahead is None:
        return None
    older, name = ahead
    return f"{WAITING}{name}, after run {older.id} of task {_named(session, older)}, waiting for it"


def _named(session: Session, run: Run) -> str:
    task = session.get(Task, run.task_id)
    return f"{run.task_id} ({task.name})" if task is not None else str(run.task_id)


def wait_for_resources(session: Session, run: Run, task: Task, link: RunLink) -> bool:
    """Hold `run` (about to be handed on) while one of its task's resources is taken;
    return whether it waits. It waits in its task's overlap queue, `waiting` with the
    reason naming the resource and the run holding it, until `release_resources`."""
    if not task.resources:
        return False
    lock_resources(session, task.resources)
    why = why_waits(session, run, task.resources, task.priority)
    if why is None:
        return False
    link.held = True
    session.add(link)
    if run.state == RunState.waiting:
        run.reason = storable(why)
        session.add(run)
    else:
        transition(session, run, RunState.waiting, reason=why)
    return True


def refuse_taking_held(session: Session, task: Task, names: list[str]) -> None:
    """Conflict when naming `names` (a PATCH) would have a run of `task` going hold a
    resource another active run holds: the run started without waiting for it, so two
    runs would hold it at once. A resource nobody holds may be named: that run holds it."""
    added = sorted(set(names) - set(task.resources or []))
    if not added:
        return
    lock_resources(session, added)
    going = session.exec(
        select(Run)
        .where(Run.task_id == task.id, rare(col(Run.state).in_(HOLDING_VALUES)))
        .order_by(col(Run.created_at))
    ).all()
    if not going:
        return
    held = _first_holder(session, added, col(Run.task_id) != task.id)
    run = going[0]
    if held is not None:
        holder, name = held
        why = f"resource {name} is held by run {holder.id} of task {_named(session, holder)}"
    elif len(going) > 1:
        why = f"its run {going[1].id} ({going[1].state}) too, both would hold {added[0]}"
    else:
        return
    raise Conflict(
        f"task {task.id} has run {run.id} going ({run.state}) and {why}; change its"
        " resources once one of them has ended",
        details={"task_id": task.id, "run_id": run.id, "resources": added},
    )


def refuse_report_while_waiting(session: Session, run: Run, task: Task) -> None:
    """Conflict when a report would start `run` (of an external task, status_report.py)
    while it still waits for a resource: the work must not begin beside the holder's."""
    if not task.resources:
        return
    lock_resources(session, task.resources)
    why = why_waits(session, run, task.resources, task.priority)
    if why is not None:
        raise Conflict(
            f"run {run.id} of task {task.id} has not started: {why}; report it once it has",
            details={"task_id": task.id, "run_id": run.id, "state": run.state},
        )


def release_resources(session: Session, names: list[str], hook: RunReadyHook | None) -> None:
    """Try again the runs waiting for these resources, their tasks' in the order they go
    (higher priority first, then oldest; each task's overlap queue lets its own go:
    launch.release_held). The tasks are locked first, in id order, so no start of theirs
    comes between."""
    if not names:
        return
    task_ids = session.exec(
        _held_waiting(select(Run.task_id), names)
        .join(Task, col(Task.id) == col(Run.task_id))
        .order_by(col(Task.priority).desc(), col(Run.created_at))
    ).all()
    ordered = list(dict.fromkeys(task_ids))
    tasks = [task for tid in sorted(ordered) if (task := session.get(Task, tid)) is not None]
    for task in tasks:
        lock_launches(session, task)
    by_id = {task.id: task for task in tasks}
    for task_id in ordered:
        if task_id in by_id:
            release_held(session, by_id[task_id], hook)


def list_resources(
    session: Session, sites_in: tuple[str, ...] | None, names: list[str] | None = None
) -> list[ResourcePublic]:
    """Every resource a task of these sites (None: all) names (of `names` only, when
    given), with its holder and the runs waiting for it (in the order they go: higher
    priority first, then oldest), by name. A
    holder on another site is only said to exist (`held_elsewhere`), as any run there
    is not the caller's to see."""
    named = select(TaskResource.resource, Task.id, Task.name, Task.site).join(
        Task, col(Task.id) == col(TaskResource.task_id)
    )
    if names is not None:
        named = named.where(col(TaskResource.resource).in_(names))
    resources: dict[str, ResourcePublic] = {}
    for name, task_id, _, site in session.exec(named.order_by(col(TaskResource.resource))):
        if sites_in is None or site in sites_in:
            resources.setdefault(name, ResourcePublic(name=name)).tasks.append(task_id or 0)
    if not resources:
        return []
    runs = session.exec(
        select(Run, TaskResource.resource, Task)
        .join(TaskResource, col(TaskResource.task_id) == col(Run.task_id))
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(col(TaskResource.resource).in_(list(resources)))
        .where(rare(col(Run.state).in_([*HOLDING_VALUES, RunState.waiting.value])))
        .order_by(col(Task.priority).desc(), col(Run.created_at))
    ).all()
    for run, name, task in runs:
        resource = resources[name]
        seen = sites_in is None or task.site in sites_in
        entry = ResourceRun(
            run_id=run.id,
            task_id=run.task_id,
            task_name=task.name,
            state=run.state,
            created_at=run.created_at,
            priority=task.priority,
        )
        if run.state != RunState.waiting:
            if seen:
                resource.holder = entry
            else:
                resource.held_elsewhere = True
        elif seen and run.reason.startswith(WAITING):
            resource.waiting.append(entry)
    return list(resources.values())
