"""Rollouts listed past one page: GET /api/v1/rollouts takes a `cursor` and gives the next
page's URL in a `Link: rel="next"` header (its answer stays a list), and client.rollouts.list
(sync and async) and `tme rollout list` follow it, where at most 1,000 could be read."""

from __future__ import annotations

import json

import pytest
from rollout_fleet import plant, speed
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import tme
from tme.cli.main import app
from tme.errors import ValidationError


@pytest.fixture
def three_rollouts(app_engine: Engine, test_client) -> list[int]:  # type: ignore[no-untyped-def]
    """Three rollouts, oldest first."""
    plant(app_engine)
    made = [test_client.post("/api/v1/rollouts", json=speed(name=f"r{i}")) for i in range(3)]
    assert [m.status_code for m in made] == [201, 201, 201]
    return [m.json()["id"] for m in made]


def test_the_api_pages_rollouts_with_a_link_header(test_client, three_rollouts: list[int]) -> None:  # type: ignore[no-untyped-def]
    first = test_client.get("/api/v1/rollouts", params={"limit": 2})
    assert [r["id"] for r in first.json()] == three_rollouts[:0:-1]
    second = test_client.get(first.links["next"]["url"])
    assert [r["id"] for r in second.json()] == three_rollouts[:1]
    assert "link" not in second.headers
    bad = test_client.get("/api/v1/rollouts", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["error"]["details"][0]["field"]) == (422, "cursor")


def test_the_sdk_lists_rollouts_across_pages(live_url: str, three_rollouts: list[int]) -> None:
    with tme.Client(live_url) as client:
        assert [r.id for r in client.rollouts.list(page_size=2)] == three_rollouts[::-1]
        assert [r.id for r in client.rollouts.list(page_size=1, site="plant-2")] == []
        with pytest.raises(ValidationError) as caught:
            client.rollouts.list(page_size=1001)
    assert [e["field"] for e in caught.value.field_errors] == ["page_size"]


async def test_the_async_sdk_lists_rollouts_across_pages(
    live_url: str, three_rollouts: list[int]
) -> None:
    async with tme.AsyncClient(live_url) as client:
        listed = [r.id async for r in client.rollouts.list(page_size=1)]
    assert listed == three_rollouts[::-1]


def _listed(live_url: str, *args: str) -> list[int]:
    result = CliRunner().invoke(app, ["rollout", "list", *args, "--json", "--url", live_url])
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.stdout)]


def test_the_cli_lists_up_to_its_limit(live_url: str, three_rollouts: list[int]) -> None:
    assert _listed(live_url, "--limit", "2") == three_rollouts[:0:-1]
    assert _listed(live_url) == three_rollouts[::-1]
    refused = CliRunner().invoke(app, ["rollout", "list", "--limit", "0", "--url", live_url])
    assert refused.exit_code == 2 and "--limit" in refused.output
