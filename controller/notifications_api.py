"""/api/v1/notifications: rules (per task or global) and the record of deliveries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from tme.controller.api.deps import SessionDep
from tme.controller.notifications.models import NotificationDelivery, NotificationRule
from tme.errors import NotFound

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
READ = {"x-permission": "task.read"}
MANAGE = {"x-permission": "schedule.manage"}

EventName = Literal["failed", "timed_out", "lost", "agent_offline"]


def _default_events() -> list[EventName]:
    return ["failed", "timed_out", "lost"]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    task_id: int | None = Field(default=None, gt=0, description="None: every task")
    events: list[EventName] = Field(default_factory=_default_events)
    channel: Literal["email", "webhook"]
    target: str = Field(min_length=1, max_length=2000, description="addresses or URL")
    secret: str = Field(default="", max_length=200, description="HMAC key of a webhook")


def _public(rule: NotificationRule) -> dict[str, Any]:
    data = rule.model_dump(exclude={"secret"})
    data["signed"] = bool(rule.secret)
    return data


@router.get("/rules", openapi_extra=READ)
def list_rules(session: SessionDep) -> list[dict[str, Any]]:
    rules = session.exec(select(NotificationRule).order_by(col(NotificationRule.id)))
    return [_public(r) for r in rules]


@router.post("/rules", status_code=201, openapi_extra=MANAGE)
def create_rule(body: RuleCreate, session: SessionDep) -> dict[str, Any]:
    rule = NotificationRule(**body.model_dump())
    session.add(rule)
    session.commit()
    session.refresh(rule)
    return _public(rule)


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response, openapi_extra=MANAGE)
def delete_rule(rule_id: int, session: SessionDep) -> Response:
    rule = session.get(NotificationRule, rule_id)
    if rule is None:
        raise NotFound(f"notification rule {rule_id} does not exist")
    session.delete(rule)
    session.commit()
    return Response(status_code=204)


@router.get("/deliveries", openapi_extra=READ)
def list_deliveries(
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    query = select(NotificationDelivery).order_by(col(NotificationDelivery.id).desc())
    if status:
        query = query.where(NotificationDelivery.status == status)
    return [d.model_dump() for d in session.exec(query.limit(limit))]
