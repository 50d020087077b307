"""/api/v1/notifications: rules (per task, per site or global) and the record of deliveries.

A rule watches one site: its task's, or the one it names; a rule naming neither
watches every site and needs a grant of all sites. A caller scoped to sites sees
and manages only the rules of its sites, and only the deliveries about them.

A target (a webhook URL often holds a token) is shown whole only to a caller who
may manage the rule it belongs to; others see it redacted. A delivery about one
site may come from a global rule or a webhook of the settings file, which only a
manager of every site sees whole.

Deliveries are many (one per event and rule): they are listed newest first in pages, as
rollouts are (`cursor`; `Link: <...>; rel="next"` when there are more). Rules are few,
made by hand, and listed whole.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationInfo, field_validator
from sqlmodel import Session, col, select

from tme.admin_schemas import (
    DeliveryStatus,
    NotificationDeliveryPublic,
    NotificationRuleCreate,
    NotificationRulePublic,
)
from tme.controller.api.change_commit import ChangeDep
from tme.controller.api.deps import MAX_ID, PrincipalDep, SessionDep
from tme.controller.api.links import link_next_page
from tme.controller.notifications import targets
from tme.controller.notifications.models import NotificationDelivery, NotificationRule
from tme.controller.services.access import check_target_site, within_scope
from tme.controller.services.paging import MAX_PAGE, decode_id_cursor, id_page
from tme.controller.services.roles import Permission, Principal
from tme.controller.store.models import Task
from tme.errors import NotFound, ValidationError

MAX_RULE_ID = 2**31 - 1

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
READ = {"x-permission": "task.read"}
MANAGE = {"x-permission": "schedule.manage"}


class RuleCreate(NotificationRuleCreate):
    """The rule's fields (tme.admin_schemas), and a target the notifier can send to."""

    @field_validator("target")
    @classmethod
    def _usable_target(cls, target: str, info: ValidationInfo) -> str:
        """A target the notifier can send to: an http(s) URL with a host, or addresses."""
        channel = info.data.get("channel")
        if channel == "webhook":
            return targets.check_webhook_url(target)
        if channel == "email":
            return targets.check_addresses(target)
        return target  # the channel itself is invalid, and said so


def _manages(principal: Principal, site: str | None) -> bool:
    """Whether `principal` may manage a rule of `site` (None: a rule of every site),
    as creating or deleting one requires."""
    return principal.can(Permission(MANAGE["x-permission"])) and principal.sees_site(site)


def _public(rule: NotificationRule, principal: Principal) -> NotificationRulePublic:
    data = rule.model_dump(exclude={"secret"})
    data["signed"] = bool(rule.secret)
    if not _manages(principal, rule.site):
        data["target"] = targets.redact(rule.channel, rule.target)
    return NotificationRulePublic.model_validate(data)


def _rule_sites(session: Session, deliveries: list[NotificationDelivery]) -> dict[str, str | None]:
    """The site of each stored rule behind `deliveries`, by rule key. A rule of the
    settings file, or one deleted since, is missing: a rule of every site."""
    keys = {d.rule.removeprefix("rule:") for d in deliveries if d.rule.startswith("rule:")}
    ids = [int(key) for key in keys if key.isdigit()]
    if not ids:
        return {}
    query = select(NotificationRule.id, NotificationRule.site).where(
        col(NotificationRule.id).in_(ids)
    )
    return {f"rule:{rule_id}": site for rule_id, site in session.exec(query)}


def _delivery(
    delivery: NotificationDelivery, principal: Principal, rule_sites: dict[str, str | None]
) -> NotificationDeliveryPublic:
    data = delivery.model_dump()
    if not _manages(principal, rule_sites.get(delivery.rule)):
        data["target"] = targets.redact(delivery.channel, delivery.target)
    return NotificationDeliveryPublic.model_validate(data)


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


@router.get("/rules", response_model=list[NotificationRulePublic], openapi_extra=READ)
def list_rules(session: SessionDep, principal: PrincipalDep) -> list[NotificationRulePublic]:
    query = within_scope(select(NotificationRule), NotificationRule.site, principal)
    rules = session.exec(query.order_by(col(NotificationRule.id)))
    return [_public(r, principal) for r in rules]


@router.post("/rules", status_code=201, response_model=NotificationRulePublic, openapi_extra=MANAGE)
def create_rule(
    body: RuleCreate,
    request: Request,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
) -> NotificationRulePublic:
    if body.channel == "webhook":
        refused = request.app.state.settings.notifications.refused_networks()
        try:
            targets.check_webhook_host(body.target, refused)
        except ValueError as exc:
            raise ValidationError(
                f"target: {exc}",
                field_errors=[{"field": "target", "message": str(exc), "type": "value_error"}],
            ) from None
    site = _watched_site(session, principal, body)
    rule = NotificationRule(**body.model_dump(exclude={"site"}), site=site)
    session.add(rule)
    session.flush()  # its id, for the answer made before the commit
    answer = _public(rule, principal)
    change.commit(201)
    return answer


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response, openapi_extra=MANAGE)
def delete_rule(
    rule_id: Annotated[int, Path(gt=0, le=MAX_ID)],
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
) -> Response:
    # Rule ids are 32-bit on PostgreSQL: a larger one names no rule (not a 422).
    rule = session.get(NotificationRule, rule_id) if rule_id <= MAX_RULE_ID else None
    if rule is None or not principal.sees_site(rule.site):
        raise NotFound(f"notification rule {rule_id} does not exist", details={"rule_id": rule_id})
    session.delete(rule)
    change.commit(204)
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[NotificationDeliveryPublic], openapi_extra=READ)
def list_deliveries(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> list[NotificationDeliveryPublic]:
    """Newest first, within the caller's sites. The answer stays a list, as it was before
    it was paged: a `Link: <...>; rel="next"` header gives the next page's URL (its
    `cursor`) when there are more."""
    query = within_scope(select(NotificationDelivery), NotificationDelivery.site, principal)
    if status:
        query = query.where(NotificationDelivery.status == status)
    if cursor:
        query = query.where(col(NotificationDelivery.id) < decode_id_cursor(cursor))
    query = query.order_by(col(NotificationDelivery.id).desc()).limit(limit + 1)
    deliveries, next_cursor = id_page(list(session.exec(query)), limit)
    link_next_page(request, response, next_cursor)
    rule_sites = _rule_sites(session, deliveries)
    return [_delivery(d, principal, rule_sites) for d in deliveries]
