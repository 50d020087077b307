"""Task use cases shared by the documented /tasks paths and /api/v1: create, change
and delete (reading them is in task_reads, their dependency edges in task_dependencies;
both are offered here too, as before).

Each function takes an open session; the caller's transaction makes the whole
use case atomic, so a refused request writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError as PydanticError
from sqlalchemy import delete
from sqlalchemy import update as sa_update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from tme.controller.notifications.models import NotificationRule
from tme.controller.services import fleet_checks, policies
from tme.controller.services import runs as run_service
from tme.controller.services.launch import release_held
from tme.controller.services.resources import (
    refuse_taking_held,
    release_resources,
    store_resources,
)
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.status_report import report_status
from tme.controller.services.task_checks import check_one_off_due, check_storable
from tme.controller.services.task_dependencies import (
    check_dependencies,
    lock_dependency_changes,
    store_edges,
)
from tme.controller.services.task_reads import TaskFilters as TaskFilters
from tme.controller.services.task_reads import get_task as get_task
from tme.controller.services.task_reads import list_tasks as list_tasks
from tme.controller.services.task_reads import target_of as target_of
from tme.controller.services.task_reads import to_public as to_public
from tme.controller.services.task_reads import to_publics as to_publics
from tme.controller.services.task_start import StartBatch
from tme.controller.store.models import IdempotencyKey, Run, Task, TaskDependency, utcnow
from tme.controller.store.planner import rare
from tme.controller.workflow import decide_after_new_dependencies
from tme.errors import Conflict, PreconditionFailed, ValidationError, describe_validation
from tme.schemas import Target, TaskCreate, TaskUpdate, validate_task_shape
from tme.states import RunState

INVALID = "invalid request: "  # how the API's validation errors begin


@runtime_checkable
class StartsBatches(Protocol):
    """A run-ready hook that can also start new tasks built before the first write."""

    def start_batch(self) -> StartBatch: ...


def request_hash(data: TaskCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_task(
    session: Session,
    data: TaskCreate,
    *,
    idempotency_key: str | None = None,
    on_run_ready: RunReadyHook | None = None,
) -> tuple[Task, bool]:
    """Store a new task; return it and whether it was created (False: idempotent replay)."""
    ((task, created),) = create_tasks(
        session, [data], idempotency_keys=[idempotency_key], on_run_ready=on_run_ready
    )
    return task, created


def create_tasks(
    session: Session,
    items: list[TaskCreate],
    *,
    idempotency_keys: list[str | None] | None = None,
    on_run_ready: RunReadyHook | None = None,
    numbered: bool = False,
    warnings: list[list[str]] | None = None,
    start: bool = True,
) -> list[tuple[Task, bool]]:
    """Store new tasks in the caller's transaction; for each, the task and whether it was
    created (False: an idempotent replay of its key).

    Every item is checked before its task is added, and the tasks are flushed together
    for their ids. With the controller's hook, the rows of a task without dependencies
    (its policy, first run, hops, link and command) are built before that flush, the
    transaction's first write, and go in one statement per table after it (StartBatch);
    a task with dependencies is stored after the flush, its edges checked.
    With `numbered`, an error names the item (`tasks.<index>`). A machine task is
    checked against the fleet its agent published (fleet_checks); `warnings`, when
    given, gets each item's warnings in order ([] for a replay). Without `start`, none
    is started, whatever it has: its caller starts its runs (a rollout).
    """
    keys = idempotency_keys if idempotency_keys is not None else [None] * len(items)
    batch = (
        on_run_ready.start_batch() if start and isinstance(on_run_ready, StartsBatches) else None
    )
    results: list[tuple[Task, bool]] = []
    new: list[tuple[Task, TaskCreate, str | None]] = []
    added = False
    fleet = fleet_checks.load_view(session, [(data.op, data.target) for data in items])
    for index, (data, key) in enumerate(zip(items, keys, strict=True)):
        try:
            replay = _checked(session, data, key)
            noticed = (
                []
                if replay is not None
                else fleet_checks.check_task(fleet, data.op, data.target, data.params)
            )
        except (ValidationError, Conflict) as exc:
            raise _for_item(exc, index) if numbered else exc from None
        if warnings is not None:
            warnings.append(noticed)
        if replay is not None:
            results.append((replay, False))
            continue
        task = Task(
            name=data.name,
            description=data.description,
            op=data.op,
            params=data.params,
            cmd=data.cmd,
            schedule=data.schedule.model_dump(mode="json") if data.schedule else None,
            depends_on=[d.model_dump() for d in data.depends_on],
            timeout_s=data.timeout_s,
            retries=data.retries.model_dump(),
            priority=data.priority,
            assigned_to=data.assigned_to,
            resources=list(data.resources),
            **_target_columns(data.target),
        )
        session.add(task)
        added = True
        # A task naming resources checks them as it starts (run_ready), not in the batch.
        if batch is not None and not data.depends_on and not data.resources:
            batch.plan(task, data, (key, request_hash(data)) if key is not None else None)
        else:
            new.append((task, data, key))
        results.append((task, True))
    if added:
        session.flush()  # assigns the ids
    if batch is not None:
        batch.write(session)
    for task, data, key in new:
        _stored(session, task, data, key, on_run_ready, start)
    return results


def _checked(session: Session, data: TaskCreate, key: str | None) -> Task | None:
    """Refuse an item that cannot be stored; return the task its key already made."""
    check_storable(data)
    check_one_off_due(data.schedule, data.misfire or policies.default_misfire(data.op))
    if key is not None:
        replay = _idempotent_replay(session, key, request_hash(data))
        if replay is not None:
            return replay
    check_dependencies(session, None, data.depends_on)
    return None


def _for_item(exc: ValidationError | Conflict, index: int) -> ValidationError | Conflict:
    """The same error, naming the item of a batch it is about."""
    where = f"tasks.{index}"
    if isinstance(exc, ValidationError):
        fields = [{**e, "field": f"{where}.{e.get('field', '')}"} for e in exc.field_errors]
        said = exc.message.removeprefix(INVALID)
        prefix = INVALID if said != exc.message else ""  # it stays first
        return ValidationError(f"{prefix}{where}: {said}", field_errors=fields)
    return Conflict(f"{where}: {exc.message}", details={**(exc.details or {}), "index": index})


def _stored(
    session: Session,
    task: Task,
    data: TaskCreate,
    key: str | None,
    on_run_ready: RunReadyHook | None,
    start: bool = True,
) -> None:
    """What a new task brings once it has its id: edges, policy, idempotency key, and
    its first run when it starts at once (and `start`)."""
    if data.depends_on:  # a new task has no edges to replace
        store_edges(session, task, data.depends_on)
    if data.resources:
        store_resources(session, task, data.resources)
    policies.store_policy(session, task, data)
    if key is not None:
        session.add(IdempotencyKey(key=key, request_hash=request_hash(data), task_id=task.id or 0))
    if start and data.schedule is None and not data.depends_on and data.trigger is None:
        run = run_service.start_run(session, task, reason="created", source="api")
        if on_run_ready is not None:
            on_run_ready(session, run, task)


def claim_batch_key(
    session: Session, key: str, items: list[TaskCreate], made: list[tuple[Task, bool]]
) -> None:
    """Hold `key` for this batch as a whole, once its items (under `<key>:<i>`) were
    created or replayed: the same key with another batch (more or fewer tasks) or for a
    single task is refused, where the items' keys alone would let the extra ones in."""
    digest = hashlib.sha256("\n".join(map(request_hash, items)).encode()).hexdigest()
    stored = session.get(IdempotencyKey, key)
    if stored is None:
        session.add(IdempotencyKey(key=key, request_hash=digest, task_id=made[0][0].id or 0))
    elif stored.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different batch of tasks",
            details={"idempotency_key": key, "tasks": len(items)},
        )


def _idempotent_replay(session: Session, key: str, digest: str) -> Task | None:
    stored = session.get(IdempotencyKey, key)
    if stored is None:
        return None
    if stored.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            details={"idempotency_key": key, "task_id": stored.task_id},
        )
    task = session.get(Task, stored.task_id)
    if task is None:
        raise Conflict(
            "this Idempotency-Key belongs to a task that was deleted",
            details={"idempotency_key": key, "task_id": stored.task_id},
        )
    return task


def fleet_notices(session: Session, task: Task) -> list[str]:
    """What the fleet says of a stored task now: the warnings its create would get
    today, or why its agent would refuse it (what the agent published changed since)."""
    target = target_of(task)
    try:
        view = fleet_checks.load_view(session, [(task.op, target)])
        return fleet_checks.check_task(view, task.op, target, task.params or {})
    except ValidationError as exc:
        return [f"its agent would refuse it as it stands: {exc.message.removeprefix(INVALID)}"]


def _target_columns(target: Target | None) -> dict[str, Any]:
    if target is None:
        return {"site": None, "agent": None, "device": None}
    return {"site": target.site, "agent": target.agent, "device": target.device}


def update_task(
    session: Session,
    task_id: int,
    update: TaskUpdate,
    warnings: list[str] | None = None,
    hook: RunReadyHook | None = None,
    if_match: int | None = None,
) -> Task:
    """Change fields and/or apply a status report (external tasks). A change of the
    target or params is checked against the fleet (fleet_checks); `warnings`, when
    given, gets what that check noticed without refusing. Changed dependencies are
    looked at in the workflow runs going on where the task waited (`hook` starts a step
    they now let start). A change of its fields takes the task to its next revision;
    with `if_match`, only from that revision (PreconditionFailed otherwise)."""
    check_storable(update)
    task = get_task(session, task_id)
    changes = update.field_changes
    if changes or if_match is not None:
        _next_revision(session, task, if_match)
    if changes.get("schedule") is not None:
        misfire = changes.get("misfire") or policies.misfire_of(
            task, policies.get_policy(session, task)
        )
        check_one_off_due(changes["schedule"], misfire)
    checks_fleet = "target" in changes or "params" in changes
    before = [int(dep["task"]) for dep in task.depends_on or []]
    named = set(task.resources or []) | set(changes.get("resources") or [])
    if "resources" in changes:
        refuse_taking_held(session, task, list(changes.get("resources") or []))
    if changes:
        _apply_field_changes(session, task, changes)
    if checks_fleet:
        target = target_of(task)
        fleet = fleet_checks.load_view(session, [(task.op, target)])
        noticed = fleet_checks.check_task(fleet, task.op, target, task.params or {})
        if warnings is not None:
            warnings.extend(noticed)
    if update.run_state is not None:
        report_status(session, task, update)
    task.updated_at = utcnow()
    session.add(task)
    if update.field_changes.get("depends_on") and before:
        session.flush()  # the new edges, which deciding the step reads
        decide_after_new_dependencies(session, task.id or 0, before, hook)
    if "resources" in update.field_changes:
        # Runs that waited for what it named before, or for what it now names, may go.
        session.flush()
        release_resources(session, sorted(named), hook)
        # Its own waiting runs too, though it may name none of those any more.
        release_held(session, task, hook)
    return task


def _next_revision(session: Session, task: Task, expected: int | None) -> None:
    """Take the task to its next revision in one statement, from `expected` only (when
    given): of two changes sent with the same If-Match, the second finds the first's
    revision and is refused, whichever transaction reads first."""
    statement = sa_update(Task).where(col(Task.id) == task.id)
    if expected is not None:
        statement = statement.where(col(Task.revision) == expected)
    statement = statement.values(revision=col(Task.revision) + 1).returning(col(Task.revision))
    new = session.execute(statement, execution_options={"synchronize_session": False})
    revision = new.scalar_one_or_none()
    if revision is None:
        raise PreconditionFailed(
            f"task {task.id} changed since it was read: it is at revision {task.revision},"
            f" and If-Match named {expected}; read it again and apply the change to it",
            details={"task_id": task.id, "revision": task.revision, "if_match": expected},
        )
    set_committed_value(task, "revision", revision)


def _apply_field_changes(session: Session, task: Task, changes: dict[str, Any]) -> None:
    policy_changes = {k: changes.pop(k) for k in policies.POLICY_FIELDS if k in changes}
    if policy_changes:
        policies.apply_policy_changes(session, task, policy_changes)
    if "schedule" in changes:
        policies.schedule_changed(session, task)
    target = changes.pop("target", _UNSET)
    if target is not _UNSET:
        columns = _target_columns(target)
        if (columns["site"], columns["agent"]) != (task.site, task.agent):
            # A run's answers are taken from the agent of its task only.
            why = "its answers come from the agent it was sent to, not from the new one"
            _refuse_while_in_flight(session, task.id or 0, why)
        task.site, task.agent, task.device = columns.values()
    current_target = (
        _target_columns(None)
        if not task.site
        else {"site": task.site, "agent": task.agent, "device": task.device}
    )
    params = changes.get("params", task.params) or {}
    cmd = changes.get("cmd", task.cmd)
    try:
        target_model = Target(**current_target) if current_target["site"] else None
        changes["params"] = validate_task_shape(task.op, target_model, params, cmd)
    except PydanticError as exc:
        message, fields = describe_validation(exc.errors())
        raise ValidationError(message, field_errors=fields) from exc
    if "depends_on" in changes:
        deps = changes["depends_on"] or []
        if deps:
            lock_dependency_changes(session, task.id or 0)
        check_dependencies(session, task.id, deps)
        store_edges(session, task, deps)
        changes["depends_on"] = [d.model_dump() for d in deps]
    if "schedule" in changes:
        schedule = changes["schedule"]
        changes["schedule"] = schedule.model_dump(mode="json") if schedule else None
    if "retries" in changes:
        changes["retries"] = changes["retries"].model_dump() if changes["retries"] else {}
    if "resources" in changes:
        store_resources(session, task, changes.pop("resources") or [])
    for key, value in changes.items():
        setattr(task, key, value)


_UNSET: Any = object()


def delete_task(session: Session, task_id: int, hook: RunReadyHook | None = None) -> None:
    """Delete a task with its runs; the runs that waited for its resources (a run of it
    not handed off, an external task's `pending` one, held them) are tried again."""
    task = get_task(session, task_id)
    dependents = sorted(
        session.exec(
            select(TaskDependency.task_id).where(TaskDependency.predecessor_id == task_id)
        ).all()
    )
    if dependents:
        raise Conflict(
            f"task {task_id} is a dependency of tasks {dependents}; change or delete them first",
            details={"task_id": task_id, "dependents": dependents},
        )
    _refuse_while_in_flight(session, task_id, "deleting it would lose the run's outcome")
    # Its notification rules go with it, as its edges do: a rule of a task that no
    # longer exists watches nothing of it (and fired still on its agents going offline).
    session.execute(delete(NotificationRule).where(col(NotificationRule.task_id) == task_id))
    named = list(task.resources or [])
    session.delete(task)
    if named:
        session.flush()
        release_resources(session, named, hook)


def _refuse_while_in_flight(session: Session, task_id: int, why: str) -> None:
    """Conflict while a run of the task has left the controller's hands (HANDED_OFF)."""
    in_flight = session.exec(
        select(Run.id, Run.state)
        .where(Run.task_id == task_id, rare(col(Run.state).in_([s.value for s in HANDED_OFF])))
        .order_by(col(Run.created_at))
        .limit(1)
    ).first()
    if in_flight is not None:
        run_id, state = in_flight
        raise Conflict(
            f"task {task_id} has a run in flight (run {run_id}, {state}): {why}; "
            f"cancel it first (POST /api/v1/runs/{run_id}/cancel) or wait for it",
            details={"task_id": task_id, "run_id": run_id, "state": state},
        )


# Run states in which a run has left the controller's hands (an outbox row, a broker, an
# agent, a machine, or an external worker that reported it started): its task must stay.
HANDED_OFF = (
    RunState.queued,
    RunState.dispatched,
    RunState.delivered,
    RunState.accepted,
    RunState.running,
)
