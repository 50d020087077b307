"""/api/v1/notifications: rules (per task, per site or global) and the record of deliveries.

A rule watches one site: its task's, or the one it names; a rule naming neither
watches every site and needs a grant of all sites. A caller scoped to sites sees
and manages only the rules of its sites, and only the deliveries about them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from tme.controller.api.deps import MAX_ID, PrincipalDep, SessionDep
from tme.controller.notifications.models import NotificationDelivery, NotificationRule
from tme.controller.services.access import check_target_site, within_scope
from tme.controller.services.roles import Principal
from tme.controller.store.models import Task
from tme.errors import NotFound, ValidationError

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
READ = {"x-permission": "task.read"}
MANAGE = {"x-permission": "schedule.manage"}

EventName = Literal["failed", "timed_out", "lost", "agent_offline"]


def _default_events() -> list[EventName]:
    return ["failed", "timed_out", "lost"]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    task_id: int | None = Field(default=None, gt=0, le=MAX_ID, description="None: every task")
    site: str | None = Field(
        default=None, min_length=1, max_length=64, description="None: the task's, or every site"
    )
    events: list[EventName] = Field(default_factory=_default_events)
    channel: Literal["email", "webhook"]
    target: str = Field(min_length=1, max_length=2000, description="addresses or URL")
    secret: str = Field(default="", max_length=200, description="HMAC key of a webhook")


def _public(rule: NotificationRule) -> dict[str, Any]:
    data = rule.model_dump(exclude={"secret"})
    data["signed"] = bool(rule.secret)
    return data


def _watched_site(session: Session, principal: Principal, body: RuleCreate) -> str | None:
    """The site a new rule watches, refused unless the caller's grant covers it."""
    site = body.site
    if body.task_id is not None:
        task = session.get(Task, body.task_id)
        if task is None or not principal.sees_site(task.site):
            raise NotFound(f"task {body.task_id} does not exist", details={"task_id": body.task_id})
        if site is not None and site != task.site:
            raise ValidationError(
                f"site {site!r} is not the site of task {body.task_id}: leave site out",
                field_errors=[
                    {"field": "site", "message": "not the task's site", "type": "value_error"}
                ],
            )
        site = task.site
    check_target_site(principal, site, field="site or task_id")
    return site


@router.get("/rules", openapi_extra=READ)
def list_rules(session: SessionDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    query = within_scope(select(NotificationRule), NotificationRule.site, principal)
    return [_public(r) for r in session.exec(query.order_by(col(NotificationRule.id)))]


@router.post("/rules", status_code=201, openapi_extra=MANAGE)
def create_rule(body: RuleCreate, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    site = _watched_site(session, principal, body)
    rule = NotificationRule(**body.model_dump(exclude={"site"}), site=site)
    session.add(rule)
    session.commit()
    session.refresh(rule)
    return _public(rule)


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response, openapi_extra=MANAGE)
def delete_rule(
    rule_id: Annotated[int, Path(gt=0, le=MAX_ID)], session: SessionDep, principal: PrincipalDep
) -> Response:
    rule = session.get(NotificationRule, rule_id)
    if rule is None or not principal.sees_site(rule.site):
        raise NotFound(f"notification rule {rule_id} does not exist", details={"rule_id": rule_id})
    session.delete(rule)
    session.commit()
    return Response(status_code=204)


@router.get("/deliveries", openapi_extra=READ)
def list_deliveries(
    session: SessionDep,
    principal: PrincipalDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    query = within_scope(select(NotificationDelivery), NotificationDelivery.site, principal)
    query = query.order_by(col(NotificationDelivery.id).desc())
    if status:
        query = query.where(NotificationDelivery.status == status)
    return [d.model_dump() for d in session.exec(query.limit(limit))]
