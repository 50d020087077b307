"""/api/v1/tasks: create, list (filters, keyset pages), get, patch, delete, runs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from tme.controller.api.change_commit import (
    ChangeCommit,
    ChangeDep,
    in_audited_transaction,
    pending_row,
)
from tme.controller.api.deps import (
    NameFilter,
    PrincipalDep,
    RunReadyDep,
    SessionDep,
    TaskId,
    TaskStatusQuery,
    wake_scheduler,
)
from tme.controller.services import access
from tme.controller.services import tasks as service
from tme.controller.services.audit import ChangeAudit
from tme.controller.services.queries import list_runs, run_publics
from tme.controller.services.roles import Principal
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.task_commit import create_committed, with_warnings
from tme.controller.services.task_limits import check_effect_time, check_task_limits
from tme.controller.services.tasks import TaskFilters, to_public, to_publics
from tme.controller.store.db import session_scope
from tme.errors import Conflict, TMEError, ValidationError
from tme.schemas import (
    Op,
    Page,
    RunPublic,
    TaskBatchCreate,
    TaskBatchPublic,
    TaskCreate,
    TaskPublic,
    TaskUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["tasks"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key and body returns the same task; another body is 409",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        min_length=1,
        max_length=40,
        description='The revision read (its ETag, e.g. "3"): a task changed since is 412',
    ),
]
BatchIdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=190,
        description="Same key and body returns the same tasks; another body is 409",
    ),
]


async def create_answer(
    request: Request,
    body: TaskCreate,
    key: str | None,
    on_run_ready: RunReadyHook | None,
    principal: Principal,
) -> Response:
    """Create and commit in one thread-pool hop, and answer 201 with the task.

    The most frequent write gets the shortest way: a plain `def` route with a session
    dependency takes four hops between the event loop and the thread pool (the
    session's opening and closing, the route, the check of its return value), each
    a thread hand-over that, under load, waits its turn for the interpreter. The
    transaction is shared with the creates of other requests meanwhile (task_commit).
    """
    check_task_limits(request.app.state.settings.tasks, body)
    engine = request.app.state.engine
    change = request.scope.get("state", {}).get("change_audit")  # from the security layer
    with keys_as_sent(key):
        public, created = await run_in_threadpool(
            _create_committed,
            engine,
            body,
            owned_key(principal, key),
            on_run_ready,
            principal,
            change,
        )
    headers = {"Location": f"/api/v1/tasks/{public.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        public.model_dump_json(by_alias=True),
        status_code=201,
        media_type="application/json",
        headers=headers,
    )


def owned_key(principal: Principal, key: str | None) -> str | None:
    """How a client's Idempotency-Key is stored: as its user's own. Users never share a
    key, so none can replay, block or learn of another's task through one (they may
    reach other sites). A fixed length leaves room for a batch item's `:<index>`."""
    if key is None:
        return None
    return hashlib.sha256(f"{principal.user_id}\0{key}".encode()).hexdigest()


@contextmanager
def keys_as_sent(key: str | None) -> Iterator[None]:
    """A conflict over a key names it as the client sent it, not as it is stored."""
    try:
        yield
    except Conflict as exc:
        if key is not None and isinstance(exc.details, dict) and "idempotency_key" in exc.details:
            exc.details = {**exc.details, "idempotency_key": key}
        raise


def _create_committed(
    engine: Engine,
    body: TaskCreate,
    key: str | None,
    on_run_ready: RunReadyHook | None,
    principal: Principal,
    change: ChangeAudit | None,
) -> tuple[TaskPublic, bool]:
    access.check_task_create(principal, body)
    if access.needs_dependency_check(principal, body.depends_on):
        with session_scope(engine) as session:
            access.check_dependencies_visible(session, principal, body.depends_on)
    return create_committed(
        engine, body, idempotency_key=key, on_run_ready=on_run_ready, change=change
    )


def update_and_commit(
    request: Request,
    session: SessionDep,
    task_id: int,
    body: TaskUpdate,
    principal: PrincipalDep,
    on_run_ready: RunReadyHook | None = None,
    if_match: int | None = None,
) -> TaskPublic:
    """The change in a transaction of its own, run again if it loses a deadlock (a status
    report against the scheduling pass: store/conflicts.py), committed with its audit
    row. `session` only found the task visible; its connection goes back to the pool
    before the change takes one.

    A status report alone (no field changed) gets its row after the response, as before:
    the chain's lock, taken first by every transaction that appends, would serialise the
    reports of external tasks, which arrive many at once (on PostgreSQL, four to eight
    reporters got 10-35 % fewer reports through with it; one alone, or on SQLite, got
    more: one transaction instead of two)."""
    session.close()
    changes = body.field_changes
    limits = request.app.state.settings.tasks
    check_task_limits(limits, changes)
    access.check_task_update(principal, changes)

    def update(session: Session) -> TaskPublic:
        access.check_dependencies_visible(session, principal, changes.get("depends_on"))
        warnings: list[str] = []
        task = service.update_task(session, task_id, body, warnings, on_run_ready, if_match)
        if "params" in changes or "timeout_s" in changes:  # as the task now stands
            check_effect_time(limits, task.op, task.params, task.timeout_s)
        # before the commit: an answer that fails stores nothing
        return to_public(task).model_copy(update={"warnings": warnings})

    engine = request.app.state.engine
    pending = pending_row(request) if changes else None
    public = in_audited_transaction(engine, pending, 200, update)
    if body.run_state is not None:
        wake_scheduler(request)  # a reported outcome starts or skips the dependents now
    return public


def delete_and_commit(
    change: ChangeCommit, task_id: int, on_run_ready: RunReadyHook | None
) -> Response:
    service.delete_task(change.session, task_id, on_run_ready)
    change.commit(204)
    return Response(status_code=204)


@router.post("/tasks", status_code=201, response_model=TaskPublic)
async def create_task(
    request: Request,
    body: TaskCreate,
    on_run_ready: RunReadyDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await create_answer(request, body, idempotency_key, on_run_ready, principal)


@router.post("/tasks/batch", status_code=201, response_model=TaskBatchPublic)
def create_task_batch(
    request: Request,
    body: TaskBatchCreate,
    response: Response,
    session: SessionDep,
    change: ChangeDep,
    on_run_ready: RunReadyDep,
    principal: PrincipalDep,
    idempotency_key: BatchIdempotencyKey = None,
) -> TaskBatchPublic:
    """Create up to MAX_BATCH_TASKS tasks in one transaction: all or none. An error names
    the item (`tasks.<index>`); item i of a keyed batch uses the key `<key>:<i>`, and
    the key itself stands for the whole batch (another batch under it is a 409)."""
    for index, item in enumerate(body.tasks):
        check_task_limits(request.app.state.settings.tasks, item, f"tasks.{index}.")
    for index, item in enumerate(body.tasks):
        try:
            access.check_task_create(principal, item)
        except TMEError as exc:
            exc.details = {**(exc.details or {}), "index": index}
            raise
    for index, item in enumerate(body.tasks):
        access.check_dependencies_visible(session, principal, item.depends_on, f"tasks.{index}")
    owned = owned_key(principal, idempotency_key) if idempotency_key else None
    keys = [f"{owned}:{i}" if owned else None for i in range(len(body.tasks))]
    warnings: list[list[str]] = []
    with keys_as_sent(idempotency_key):
        made = service.create_tasks(
            session,
            body.tasks,
            idempotency_keys=keys,
            on_run_ready=on_run_ready,
            numbered=True,
            warnings=warnings,
        )
        if owned:  # refused here, nothing of the batch is committed
            service.claim_batch_key(session, owned, body.tasks, made)
    publics = to_publics(session, [task for task, _created in made])
    answer = TaskBatchPublic(tasks=with_warnings(publics, warnings))
    change.commit(201)
    if idempotency_key and not any(created for _task, created in made):
        response.headers["Idempotent-Replayed"] = "true"
    return answer


@router.get("/tasks", response_model=Page[TaskPublic])
def list_tasks(
    session: SessionDep,
    principal: PrincipalDep,
    status: TaskStatusQuery = None,
    site: NameFilter = None,
    agent: NameFilter = None,
    op: Annotated[Op | None, Query()] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="search name and description")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[TaskPublic]:
    filters = TaskFilters(
        status=status, site=site, agent=agent, op=op, search=q, sites=access.site_scope(principal)
    )
    rows, next_cursor = service.list_tasks(session, filters, limit=limit, cursor=cursor)
    return Page[TaskPublic](items=to_publics(session, rows), next_cursor=next_cursor)


@router.get("/tasks/{task_id}", response_model=TaskPublic)
def get_task(task_id: TaskId, session: SessionDep, response: Response) -> TaskPublic:
    public = to_public(service.get_task(session, task_id))
    response.headers["ETag"] = etag(public.revision)
    return public


@router.patch("/tasks/{task_id}", response_model=TaskPublic)
def patch_task(
    request: Request,
    task_id: TaskId,
    body: TaskUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskPublic:
    """Change fields of a task (and/or report an external task's status). With If-Match
    naming the revision read (GET's ETag), a task changed since is refused with 412."""
    revision = revision_of(if_match)
    public = update_and_commit(request, session, task_id, body, principal, on_run_ready, revision)
    response.headers["ETag"] = etag(public.revision)
    return public


def etag(revision: int) -> str:
    """A task's ETag: its revision, quoted."""
    return f'"{revision}"'


def revision_of(if_match: str | None) -> int | None:
    """The revision an If-Match names (None: none, or `*`, any): `"3"`, `W/"3"` or `3`."""
    if if_match is None or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 18:
        raise ValidationError(
            f"invalid request: If-Match: expected a task's ETag, its revision quoted"
            f' (e.g. "3"), got {if_match!r}',
            field_errors=[
                {"field": "If-Match", "message": "expected a revision", "type": "value_error"}
            ],
        )
    return int(text)


@router.delete("/tasks/{task_id}", status_code=204, response_class=Response)
def delete_task(task_id: TaskId, change: ChangeDep, on_run_ready: RunReadyDep) -> Response:
    return delete_and_commit(change, task_id, on_run_ready)


@router.get("/tasks/{task_id}/runs", response_model=Page[RunPublic])
def task_runs(
    task_id: TaskId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[RunPublic]:
    service.get_task(session, task_id)
    rows, next_cursor = list_runs(session, task_id, limit=limit, cursor=cursor)
    return Page[RunPublic](items=run_publics(session, rows), next_cursor=next_cursor)
