"""Notification deliveries listed past one page: GET /api/v1/notifications/deliveries
takes a `cursor` and gives the next page's URL in a `Link: rel="next"` header (its answer
stays a list), within the caller's sites and its `status` filter on every page, and
client.notifications.deliveries (sync and async) reads every page, where at most 1,000
could be read. The routes' answers are described in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from notify_helpers import add_delivery, deliveries
from sqlalchemy.engine import Engine

import tme
from tme.controller.services.paging import encode_cursor
from tme.errors import ValidationError

PATH = "/api/v1/notifications/deliveries"
# Oldest first: the site and status of each delivery, sites and statuses interleaved so
# that every page of one site or status has rows of the others between its own.
ROWS = [
    ("site-a", "failed"),
    ("site-b", "failed"),
    ("site-a", "delivered"),
    (None, "failed"),  # about no site: only a caller of every site sees it
    ("site-a", "failed"),
    ("site-b", "delivered"),
    ("site-a", "failed"),
    ("site-b", "failed"),
    ("site-a", "delivered"),
    ("site-a", "failed"),
]


@pytest.fixture
def made(app_engine: Engine) -> list[dict[str, Any]]:
    """The deliveries of ROWS, oldest first: each one's id, site and status."""
    for n, (site, status) in enumerate(ROWS):
        add_delivery(app_engine, "rule:1", f"http://192.0.2.10/hook/{n}", site=site, status=status)
    return [{"id": d.id, "site": d.site, "status": d.status} for d in deliveries(app_engine)]


def _newest_first(made: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> list[int]:
    return [d["id"] for d in reversed(made) if keep(d)]


def _every_page(client: TestClient | httpx.Client, **params: Any) -> tuple[list[int], int]:
    """The ids of every page, following each `Link: rel="next"`, and how many pages."""
    response = client.get(PATH, params=params)
    ids, pages = [], 0
    while True:
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)
        ids += [d["id"] for d in response.json()]
        pages += 1
        if "next" not in response.links:
            return ids, pages
        response = client.get(response.links["next"]["url"])


def test_the_api_pages_deliveries_with_the_status_filter_on_every_page(
    test_client: TestClient, made: list[dict[str, Any]]
) -> None:
    every, pages = _every_page(test_client, limit=3)
    assert (every, pages) == (_newest_first(made, lambda d: True), 4)
    failed, pages = _every_page(test_client, status="failed", limit=2)
    assert (failed, pages) == (_newest_first(made, lambda d: d["status"] == "failed"), 4)
    assert len(set(failed)) == len(failed) == 7
    first = test_client.get(PATH, params={"status": "delivered", "limit": 2})
    assert "status=delivered" in first.links["next"]["url"]
    last = test_client.get(first.links["next"]["url"])
    assert [d["status"] for d in last.json()] == ["delivered"] and "link" not in last.headers


BAD_CURSORS = {
    "not base64 JSON": "not-a-cursor",
    "a runs cursor (time, id)": encode_cursor("2026-01-01T00:00:00+00:00", "run-1"),
    "text for an id": encode_cursor("12"),
    "an id past 64 bits": encode_cursor(2**63),
    "no id": encode_cursor(),
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS)
def test_a_cursor_no_page_gave_is_refused_naming_it(test_client: TestClient, cursor: str) -> None:
    response = test_client.get(PATH, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["cursor"]
    assert "invalid cursor" in error["message"]


def test_a_caller_of_one_site_pages_through_its_own_deliveries_only(
    app: Any, made: list[dict[str, Any]], make_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_token('viewer', 'site-a')}"}
    with TestClient(app, headers=headers) as client:
        own, pages = _every_page(client, limit=2)
        own_failed, _ = _every_page(client, status="failed", limit=1)
    assert (own, pages) == (_newest_first(made, lambda d: d["site"] == "site-a"), 3)
    in_a_failed = _newest_first(made, lambda d: d["site"] == "site-a" and d["status"] == "failed")
    assert own_failed == in_a_failed and len(in_a_failed) == 4


def test_the_sdk_reads_every_page_of_deliveries(live_url: str, made: list[dict[str, Any]]) -> None:
    with tme.Client(live_url) as client:
        every = [d.id for d in client.notifications.deliveries(page_size=3)]
        failed = client.notifications.deliveries("failed", page_size=2)
        newest = client.notifications.deliveries(limit=4, page_size=3)
    assert every == _newest_first(made, lambda d: True)
    assert [d.id for d in failed] == _newest_first(made, lambda d: d["status"] == "failed")
    assert [d.id for d in newest] == every[:4]


async def test_the_async_sdk_reads_every_page_of_deliveries(
    live_url: str, made: list[dict[str, Any]]
) -> None:
    async with tme.AsyncClient(live_url) as client:
        every = [d.id for d in await client.notifications.deliveries(page_size=1)]
        newest = await client.notifications.deliveries(status="failed", limit=3, page_size=2)
    assert every == _newest_first(made, lambda d: True)
    assert [d.id for d in newest] == _newest_first(made, lambda d: d["status"] == "failed")[:3]


def test_the_sdk_refuses_a_page_size_the_server_would() -> None:
    """Before any request (nothing listens at the URL), naming the argument as written."""
    client = tme.Client("http://127.0.0.1:9", token="t")
    with client, pytest.raises(ValidationError) as caught:
        client.notifications.deliveries(page_size=1001)
    assert [e["field"] for e in caught.value.field_errors] == ["page_size"]


def test_the_openapi_document_describes_the_notification_answers(
    test_client: TestClient,
) -> None:
    spec = test_client.get("/openapi.json").json()
    paths = spec["paths"]

    def answer(path: str, method: str, status: str) -> Any:
        return paths[path][method]["responses"][status]["content"]["application/json"]["schema"]

    listed = answer(PATH, "get", "200")
    assert listed["type"] == "array"
    assert listed["items"]["$ref"] == "#/components/schemas/NotificationDeliveryPublic"
    rules = "/api/v1/notifications/rules"
    assert answer(rules, "get", "200")["items"]["$ref"].endswith("/NotificationRulePublic")
    assert answer(rules, "post", "201")["$ref"].endswith("/NotificationRulePublic")
    delivery = spec["components"]["schemas"]["NotificationDeliveryPublic"]["properties"]
    assert {"id", "rule", "target", "status", "dedup_key", "created_at"} <= set(delivery)
    assert "cursor" in [p["name"] for p in paths[PATH]["get"]["parameters"]]
