"""Task use cases shared by the documented /tasks paths and /api/v1.

Each function takes an open session; the caller's transaction makes the whole
use case atomic, so a refused request writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError as PydanticError
from sqlalchemy import delete, func, or_, text
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import object_session
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from tme.controller.notifications.models import NotificationRule
from tme.controller.services import fleet_checks, policies
from tme.controller.services import runs as run_service
from tme.controller.services.launch import LOCK_TASK
from tme.controller.services.paging import MAX_PAGE, decode_id_cursor, encode_cursor
from tme.controller.services.queries import settled_latest_among
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.status_report import report_status
from tme.controller.services.task_checks import check_one_off_due, check_storable, field_error
from tme.controller.services.task_start import StartBatch
from tme.controller.services.workflow_reach import check_reachable
from tme.controller.store.models import IdempotencyKey, Run, Task, TaskDependency, utcnow
from tme.controller.store.planner import rare
from tme.controller.store.workflow_models import TaskPolicy
from tme.controller.workflow import decide_after_new_dependencies
from tme.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    ValidationError,
    describe_validation,
)
from tme.schemas import (
    Dependency,
    Target,
    TaskCreate,
    TaskPublic,
    TaskUpdate,
    validate_task_shape,
)
from tme.states import FINAL_STATES, RunState

FINAL_VALUES = frozenset(s.value for s in FINAL_STATES)

INVALID = "invalid request: "  # how the API's validation errors begin


@runtime_checkable
class StartsBatches(Protocol):
    """A run-ready hook that can also start new tasks built before the first write."""

    def start_batch(self) -> StartBatch: ...


@dataclass(frozen=True)
class TaskFilters:
    status: str | None = None
    site: str | None = None
    agent: str | None = None
    op: str | None = None
    search: str | None = None
    # Sites the caller may see; None: every site (tasks without a site included).
    sites: tuple[str, ...] | None = None


def to_public(task: Task) -> TaskPublic:
    settled = _settled_latest(object_session(task), [task])
    return _public(task, policies.policy_of(task), settled)


def to_publics(session: Session, tasks: Sequence[Task]) -> list[TaskPublic]:
    """TaskPublic of each task, their policies read in one query, and whether their
    latest runs are settled in another."""
    found = policies.policies_of(session, [task.id for task in tasks if task.id is not None])
    settled = _settled_latest(session, tasks)
    return [_public(task, found.get(task.id or 0), settled) for task in tasks]


def _settled_latest(session: OrmSession | None, tasks: Sequence[Task]) -> set[str]:
    """The tasks' latest runs that are final and settled (TaskPublic.settled); only a
    task with a final status is looked up."""
    final = [t.latest_run_id for t in tasks if t.latest_run_id and t.status in FINAL_VALUES]
    return settled_latest_among(session, final) if session is not None and final else set()


def _public(task: Task, policy: TaskPolicy | None, settled: set[str]) -> TaskPublic:
    target = target_of(task)
    return TaskPublic.model_validate(
        {
            **task.model_dump(),
            "target": target,
            "retries": task.retries or {},
            **policies.public_fields(task, policy),
            "settled": task.latest_run_id in settled,
        }
    )


def get_task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", details={"task_id": task_id})
    return task


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
    given, gets each item's warnings in order ([] for a replay).
    """
    keys = idempotency_keys if idempotency_keys is not None else [None] * len(items)
    batch = on_run_ready.start_batch() if isinstance(on_run_ready, StartsBatches) else None
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
            **_target_columns(data.target),
        )
        session.add(task)
        added = True
        if batch is not None and not data.depends_on:
            batch.plan(task, data, (key, request_hash(data)) if key is not None else None)
        else:
            new.append((task, data, key))
        results.append((task, True))
    if added:
        session.flush()  # assigns the ids
    if batch is not None:
        batch.write(session)
    for task, data, key in new:
        _stored(session, task, data, key, on_run_ready)
    return results


def _checked(session: Session, data: TaskCreate, key: str | None) -> Task | None:
    """Refuse an item that cannot be stored; return the task its key already made."""
    check_storable(data)
    check_one_off_due(data.schedule, data.misfire or policies.default_misfire(data.op))
    if key is not None:
        replay = _idempotent_replay(session, key, request_hash(data))
        if replay is not None:
            return replay
    _check_dependencies(session, None, data.depends_on)
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
) -> None:
    """What a new task brings once it has its id: edges, policy, idempotency key, and
    its first run when it starts at once."""
    if data.depends_on:  # a new task has no edges to replace
        _store_edges(session, task, data.depends_on)
    policies.store_policy(session, task, data)
    if key is not None:
        session.add(IdempotencyKey(key=key, request_hash=request_hash(data), task_id=task.id or 0))
    if data.schedule is None and not data.depends_on and data.trigger is None:
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


def target_of(task: Task) -> Target | None:
    """The task's target, from its columns (None for a task without a site)."""
    return Target(site=task.site, agent=task.agent, device=task.device) if task.site else None


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


def _check_dependencies(session: Session, task_id: int | None, deps: list[Dependency]) -> None:
    errors = []
    first_at: dict[int, int] = {}
    for index, dep in enumerate(deps):
        seen = first_at.setdefault(dep.task, index)
        if seen != index:  # one edge per pair of tasks: a second would break its key
            message = f"task {dep.task} is already at depends_on.{seen}: give each task once"
            errors.append(field_error(f"depends_on.{index}.task", message))
        elif dep.task == task_id:
            errors.append(field_error(f"depends_on.{index}.task", "a task cannot depend on itself"))
        elif dep.task > MAX_ID or session.get(Task, dep.task) is None:
            errors.append(
                field_error(f"depends_on.{index}.task", f"task {dep.task} does not exist")
            )
    if errors:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid dependencies: {problems}", field_errors=errors)
    if task_id is not None:
        cycle = _find_cycle(session, task_id, [d.task for d in deps])
        if cycle:
            path = " -> ".join(str(t) for t in cycle)
            raise ValidationError(
                f"dependency cycle: {path}",
                field_errors=[field_error("depends_on", f"dependency cycle: {path}")],
            )
    check_reachable(session, task_id, [d.task for d in deps])


# The PostgreSQL advisory lock one change of dependencies at a time holds ("tmed").
DEPENDENCY_LOCK = 0x746D6564


def lock_dependency_changes(session: Session, task_id: int) -> None:
    """Hold, until this transaction ends, the right to change dependencies, before the
    edges are read for cycles and joins: two changes at once (A on B, B on A) would each
    find none in the edges committed before them and both be stored, a cycle. The second
    now waits for the first to commit and reads its edge. On SQLite a locking read takes
    the write gate, which serializes the changes as well."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEPENDENCY_LOCK})
    else:
        session.execute(LOCK_TASK, {"id": task_id})


def _find_cycle(session: Session, start: int, first_hops: list[int]) -> list[int] | None:
    """Depth-first search from start's new predecessors back to start."""
    stack: list[tuple[int, list[int]]] = [(t, [start, t]) for t in first_hops]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        predecessors = session.exec(
            select(TaskDependency.predecessor_id).where(TaskDependency.task_id == node)
        ).all()
        stack.extend((p, [*path, p]) for p in predecessors)
    return None


def _store_edges(session: Session, task: Task, deps: list[Dependency]) -> None:
    for old in session.exec(select(TaskDependency).where(TaskDependency.task_id == task.id)):
        session.delete(old)
    session.flush()
    for dep in deps:
        session.add(TaskDependency(task_id=task.id or 0, predecessor_id=dep.task, on=dep.on))


# Ids are 64-bit signed in both dialects; a larger one names no task.
MAX_ID = 2**63 - 1


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
        _check_dependencies(session, task.id, deps)
        _store_edges(session, task, deps)
        changes["depends_on"] = [d.model_dump() for d in deps]
    if "schedule" in changes:
        schedule = changes["schedule"]
        changes["schedule"] = schedule.model_dump(mode="json") if schedule else None
    if "retries" in changes:
        changes["retries"] = changes["retries"].model_dump() if changes["retries"] else {}
    for key, value in changes.items():
        setattr(task, key, value)


_UNSET: Any = object()


def delete_task(session: Session, task_id: int) -> None:
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
    session.delete(task)


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


def list_tasks(
    session: Session, filters: TaskFilters, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[Task], str | None]:
    """Newest first, keyset-paginated by id."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Task)
    if filters.sites is not None:
        query = query.where(col(Task.site).in_(filters.sites))
    if filters.status:
        query = query.where(Task.status == filters.status)
    if filters.site:
        query = query.where(Task.site == filters.site)
    if filters.agent:
        query = query.where(Task.agent == filters.agent)
    if filters.op:
        query = query.where(Task.op == filters.op)
    if filters.search:
        # % and _ in a search are characters to find, not LIKE wildcards
        escaped = filters.search.lower().replace("\\", "\\\\").replace("%", "\\%")
        pattern = "%" + escaped.replace("_", "\\_") + "%"
        query = query.where(
            or_(
                func.lower(Task.name).like(pattern, escape="\\"),
                func.lower(Task.description).like(pattern, escape="\\"),
            )
        )
    if cursor:
        query = query.where(col(Task.id) < decode_id_cursor(cursor))
    rows = list(session.exec(query.order_by(col(Task.id).desc()).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
