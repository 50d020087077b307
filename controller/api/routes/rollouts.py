"""/api/v1/rollouts: one device op run on many matching devices, in waves.

POST /api/v1/rollouts/preview        the devices a rollout would run on, and what the
                                     fleet checks say of each (stores nothing)
POST /api/v1/rollouts                store it, its tasks, and start its first runs
GET  /api/v1/rollouts                newest first, within the caller's sites, paged
                                     (`cursor`; Link: rel="next" when there are more)
GET  /api/v1/rollouts/{id}           one rollout with each device's task, run and state
POST /api/v1/rollouts/{id}/cancel    start no more runs, cancel the ones going
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from tme.controller.api.change_commit import ChangeDep
from tme.controller.api.deps import PrincipalDep, RunReadyDep, SessionDep
from tme.controller.api.links import link_next_page
from tme.controller.services import access, rollout_reads
from tme.controller.services.rollout_match import preview
from tme.controller.services.rollouts import cancel_rollout, create_rollout
from tme.controller.store.models import MAX_ID
from tme.rollout_schemas import RolloutCreate, RolloutPreview, RolloutPublic
from tme.schemas import Name

router = APIRouter(prefix="/api/v1", tags=["rollouts"])

TASK_READ: dict[str, Any] = {"x-permission": "task.read"}
TASK_WRITE: dict[str, Any] = {"x-permission": "task.write"}
RUN_CONTROL: dict[str, Any] = {"x-permission": "run.control"}
RolloutId = Annotated[int, Path(gt=0, le=MAX_ID, description="The rollout's id")]
RolloutState = Literal["going", "succeeded", "done", "aborted", "canceled"]


@router.post("/rollouts/preview", response_model=RolloutPreview, openapi_extra=TASK_READ)
def preview_rollout(
    body: RolloutCreate, session: SessionDep, principal: PrincipalDep
) -> RolloutPreview:
    """What POST /api/v1/rollouts would run, storing nothing: the matched devices in the
    order their runs start, the ones the fleet checks refuse (with why), the warnings of
    the others, and the window. An empty match is a 422, as for the create."""
    access.check_target_site(principal, body.match.site, "match.site")
    return preview(session, body)


@router.post("/rollouts", status_code=201, response_model=RolloutPublic, openapi_extra=TASK_WRITE)
def create(
    body: RolloutCreate,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
    response: Response,
) -> RolloutPublic:
    access.check_target_site(principal, body.match.site, "match.site")
    rollout = create_rollout(session, body, principal.username, on_run_ready)
    answer = rollout_reads.to_public(session, rollout)
    location = f"/api/v1/rollouts/{rollout.id}"
    change.commit(201, location)
    response.headers["Location"] = location
    return answer


@router.get("/rollouts", response_model=list[RolloutPublic], openapi_extra=TASK_READ)
def list_rollouts(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    site: Annotated[Name | None, Query()] = None,
    state: Annotated[RolloutState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=rollout_reads.MAX_LISTED)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> list[RolloutPublic]:
    """Newest first, without their devices (GET /api/v1/rollouts/{id} has them). The
    answer stays a list, as it was before it was paged: a `Link: <...>; rel="next"`
    header gives the next page's URL (its `cursor`) when there are more."""
    access.check_site_filter(principal, site)
    sites = access.site_scope(principal)
    rows, next_cursor = rollout_reads.list_rollouts(
        session, sites, site=site, state=state, limit=limit, cursor=cursor
    )
    link_next_page(request, response, next_cursor)
    return rows


@router.get("/rollouts/{rollout_id}", response_model=RolloutPublic, openapi_extra=TASK_READ)
def get_rollout(
    rollout_id: RolloutId, session: SessionDep, principal: PrincipalDep
) -> RolloutPublic:
    rollout = rollout_reads.visible_rollout(session, rollout_id, principal)
    return rollout_reads.to_public(session, rollout)


@router.post(
    "/rollouts/{rollout_id}/cancel", response_model=RolloutPublic, openapi_extra=RUN_CONTROL
)
def cancel(
    rollout_id: RolloutId,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    force: Annotated[bool, Query(description="mark its runs canceled at once")] = False,
) -> RolloutPublic:
    """Start no more runs and cancel the ones going, as POST /api/v1/runs/{id}/cancel
    does each (with `force`, at once even when the agent does not answer)."""
    rollout = rollout_reads.visible_rollout(session, rollout_id, principal, lock=True)
    cancel_rollout(session, rollout, principal.username, force=force)
    answer = rollout_reads.to_public(session, rollout)
    change.commit(200)
    return answer
