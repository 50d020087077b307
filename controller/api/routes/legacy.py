"""The documented task paths, kept exactly as the seed describes them.

    POST /tasks/create          201, the new task (with its id)
    GET  /tasks/                a JSON list of tasks (Link: rel="next" when there are more)
    PUT|PATCH /task/<id>/       update fields or report status (started/complete/fail)
    DELETE /task/<id>[/]        204

They share their bodies and behaviour with /api/v1/tasks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tme.controller.api.change_commit import ChangeDep
from tme.controller.api.deps import PrincipalDep, RunReadyDep, SessionDep, TaskId, TaskStatusQuery
from tme.controller.api.links import link_next_page
from tme.controller.api.routes.tasks import (
    IdempotencyKey,
    create_answer,
    delete_and_commit,
    update_and_commit,
)
from tme.controller.services import access
from tme.controller.services import tasks as service
from tme.controller.services.tasks import TaskFilters, to_public, to_publics
from tme.schemas import TaskCreate, TaskPublic, TaskUpdate

router = APIRouter(tags=["tasks (documented paths)"])


@router.post("/tasks/create", status_code=201, response_model=TaskPublic)
async def create_task(
    request: Request,
    body: TaskCreate,
    on_run_ready: RunReadyDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await create_answer(request, body, idempotency_key, on_run_ready, principal)


@router.get("/tasks/", response_model=list[TaskPublic])
def list_tasks(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    status: TaskStatusQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> list[TaskPublic]:
    rows, next_cursor = service.list_tasks(
        session,
        TaskFilters(status=status, sites=access.site_scope(principal)),
        limit=limit,
        cursor=cursor,
    )
    link_next_page(request, response, next_cursor)
    return to_publics(session, rows)


@router.get("/task/{task_id}/", response_model=TaskPublic)
@router.get("/task/{task_id}", response_model=TaskPublic, include_in_schema=False)
def get_task(task_id: TaskId, session: SessionDep) -> TaskPublic:
    return to_public(service.get_task(session, task_id))


@router.put("/task/{task_id}/", response_model=TaskPublic)
@router.patch("/task/{task_id}/", response_model=TaskPublic)
@router.put("/task/{task_id}", response_model=TaskPublic, include_in_schema=False)
@router.patch("/task/{task_id}", response_model=TaskPublic, include_in_schema=False)
def update_task(
    request: Request,
    task_id: TaskId,
    body: TaskUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
) -> TaskPublic:
    """Update fields and/or report status. PUT and PATCH behave alike, as in the seed."""
    return update_and_commit(request, session, task_id, body, principal, on_run_ready)


@router.delete("/task/{task_id}", status_code=204, response_class=Response)
@router.delete(
    "/task/{task_id}/", status_code=204, response_class=Response, include_in_schema=False
)
def delete_task(task_id: TaskId, change: ChangeDep, on_run_ready: RunReadyDep) -> Response:
    return delete_and_commit(change, task_id, on_run_ready)
