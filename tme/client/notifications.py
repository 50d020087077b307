"""`client.notifications` and its async twin: notification rules (an email or a webhook
when a run ends badly, an agent goes offline, ...) and the record of their deliveries.

The calls are built here once (free of I/O, as in `tme.client.calls`); the sync and
async classes only send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import aclosing
from itertools import islice
from typing import TYPE_CHECKING, Any

from tme.admin_schemas import (
    DeliveryFilter,
    NotificationDeliveryPublic,
    NotificationRuleCreate,
    NotificationRulePublic,
)
from tme.client.calls import (
    API,
    MAX_PAGE_SIZE,
    Call,
    _linked_page,
    _list_of,
    _no_content,
    _page_size,
    _parser,
    integer_id,
    request_body,
)
from tme.schemas import Page

if TYPE_CHECKING:
    from tme.client.aio import AsyncClient
    from tme.client.sync import Client

PATH = f"{API}/notifications"
RuleGiven = NotificationRuleCreate | Mapping[str, Any] | None


def list_rules() -> Call[list[NotificationRulePublic]]:
    return Call("GET", f"{PATH}/rules", _list_of(NotificationRulePublic))


def create_rule(rule: RuleGiven, fields: Mapping[str, Any]) -> Call[NotificationRulePublic]:
    body = request_body(NotificationRuleCreate, rule, fields).model_dump(mode="json")
    return Call("POST", f"{PATH}/rules", _parser(NotificationRulePublic), json=body)


def delete_rule(rule_id: int) -> Call[None]:
    return Call("DELETE", f"{PATH}/rules/{integer_id(rule_id, 'rule_id')}", _no_content)


_delivery_page = _linked_page(NotificationDeliveryPublic)


def list_deliveries(
    status: str | None, limit: int | None, page_size: int
) -> Call[Page[NotificationDeliveryPublic]]:
    """The pages of deliveries (of `status`), newest first, `page_size` a request, or
    `limit` when that is fewer: the newest `limit` take one request, as before paging."""
    query: DeliveryFilter = request_body(DeliveryFilter, {"status": status, "limit": limit}, {})
    params: dict[str, Any] = query.model_dump(exclude_none=True)
    params["limit"] = min(_page_size(page_size), query.limit or MAX_PAGE_SIZE)
    return Call("GET", f"{PATH}/deliveries", _delivery_page, params=params)


class Notifications:
    """`client.notifications`: rules and deliveries. A caller granted some sites sees
    and manages the rules of those sites only; a rule of every site needs a grant of
    all. A rule's target is shown whole only to who may manage the rule."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def rules(self) -> list[NotificationRulePublic]:
        return self._client.send(list_rules())

    def create_rule(self, rule: RuleGiven = None, **fields: Any) -> NotificationRulePublic:
        """Store a rule: give a NotificationRuleCreate or a dict of its fields, and/or
        its fields as keywords (which override theirs): name, channel (email or
        webhook), target (addresses or the URL), and optionally task_id or site, events
        (default failed, timed_out, lost) and a webhook's HMAC secret."""
        return self._client.send(create_rule(rule, fields))

    def delete_rule(self, rule_id: int) -> None:
        self._client.send(delete_rule(rule_id))

    def deliveries(
        self, status: str | None = None, limit: int | None = None, *, page_size: int = 100
    ) -> list[NotificationDeliveryPublic]:
        """Every delivery, newest first, read page after page (`page_size` a request, up
        to 1000); `status` is pending, delivered or failed. `limit` (1 to 1000) stops at
        the newest `limit`."""
        pages = self._client.iterate(list_deliveries(status, limit, page_size))
        return list(islice(pages, limit))


class AsyncNotifications:
    """`async_client.notifications`: see `Notifications`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def rules(self) -> list[NotificationRulePublic]:
        return await self._client.send(list_rules())

    async def create_rule(self, rule: RuleGiven = None, **fields: Any) -> NotificationRulePublic:
        return await self._client.send(create_rule(rule, fields))

    async def delete_rule(self, rule_id: int) -> None:
        await self._client.send(delete_rule(rule_id))

    async def deliveries(
        self, status: str | None = None, limit: int | None = None, *, page_size: int = 100
    ) -> list[NotificationDeliveryPublic]:
        found: list[NotificationDeliveryPublic] = []
        call = list_deliveries(status, limit, page_size)
        async with aclosing(self._client.iterate(call)) as pages:
            async for delivery in pages:
                found.append(delivery)
                if len(found) == limit:
                    break
        return found
