"""`client.audit` and its async twin: the audit log (admin), newest first, paged, or
exported whole as CSV.

The calls are built here once (free of I/O, as in `tme.client.calls`); the sync and
async classes only send them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import httpx

from tme.admin_schemas import AuditEntryPublic, AuditFilter, AuditPage, check_time_range
from tme.client.calls import API, Call, _page_size, _parser, check, unexpected, validated
from tme.schemas import Page

if TYPE_CHECKING:
    from tme.client.aio import AsyncClient
    from tme.client.sync import Client

_audit_page = _parser(AuditPage)


def _filter_params(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as query parameters, refused before any request as the server would
    refuse them (a ValidationError naming the filter)."""
    given: AuditFilter = validated(AuditFilter, {k: v for k, v in filters.items() if v is not None})
    check_time_range(given.since, given.until)
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in given.model_dump(exclude_none=True).items()
    }


def _entries(response: httpx.Response) -> Page[AuditEntryPublic]:
    """An audit page read as a page of any listing: `next_before_id` is its cursor."""
    page: AuditPage = _audit_page(response)
    after = None if page.next_before_id is None else str(page.next_before_id)
    return Page[AuditEntryPublic](items=page.items, next_cursor=after)


def list_audit(page_size: int = 100, **filters: Any) -> Call[Page[AuditEntryPublic]]:
    """Filters: actor, action (a prefix), outcome, since, until; None means any."""
    params = {**_filter_params(filters), "limit": _page_size(page_size)}
    return Call("GET", f"{API}/audit", _entries, params=params, page_param="before_id")


def _csv(response: httpx.Response) -> str:
    check(response)
    if not response.headers.get("content-type", "").startswith("text/csv"):
        raise unexpected(response, "not CSV")
    return response.text


def export_audit(**filters: Any) -> Call[str]:
    return Call("GET", f"{API}/audit.csv", _csv, params=_filter_params(filters))


class AuditFilters(TypedDict, total=False):
    """The filters `audit.list()` and `audit.export()` take, as keywords."""

    actor: str | None
    action: str | None  # a prefix: "auth." is every login and logout
    outcome: str | None  # ok, failed or refused
    since: datetime | str | None  # without a UTC offset: UTC
    until: datetime | str | None


class Audit:
    """`client.audit`: the audit log. It covers every site: an admin's token with a
    grant of all sites reads it, any other gets Forbidden (403)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self, *, page_size: int = 100, **filters: Unpack[AuditFilters]
    ) -> Iterator[AuditEntryPublic]:
        """Iterate over every matching entry, newest first, across all pages: entries
        from `since` up to before `until`, of `actor`, with an `action` starting so."""
        return self._client.iterate(list_audit(page_size, **filters))

    def export(self, **filters: Unpack[AuditFilters]) -> str:
        """The matching entries as CSV text (up to 100,000 rows, newest first), with the
        columns id, at, actor, action, target, outcome, client, details, hash."""
        return self._client.send(export_audit(**filters))


class AsyncAudit:
    """`async_client.audit`: see `Audit`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def list(
        self, *, page_size: int = 100, **filters: Unpack[AuditFilters]
    ) -> AsyncIterator[AuditEntryPublic]:
        """`async for entry in client.audit.list(...)`: every matching entry, all pages."""
        return self._client.iterate(list_audit(page_size, **filters))

    async def export(self, **filters: Unpack[AuditFilters]) -> str:
        return await self._client.send(export_audit(**filters))
