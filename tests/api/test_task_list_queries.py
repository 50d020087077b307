"""A page of tasks reads their policies in one query, not one per task, and shows the same
policy fields as each task's own GET (services.tasks.to_publics)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

MACHINE = {"op": "noop", "target": {"site": "plant-1", "agent": "skid-a"}}
BY_TASK = re.compile(r"FROM task_policies\s+WHERE task_policies\.task_id (IN|=)")


@pytest.fixture
def policy_reads(app_engine: Engine) -> Iterator[list[str]]:
    """The statements that read tasks' policies by task id, as the app's engine runs them."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Reads of policies by task (one task's, or a page's): the controller's own
        # threads read task_policies meanwhile too (the schedule keeper's changes).
        if BY_TASK.search(statement):
            seen.append(statement)

    event.listen(app_engine, "before_cursor_execute", note)
    yield seen
    event.remove(app_engine, "before_cursor_execute", note)


def _create_mixed(client: TestClient, count: int) -> None:
    for i in range(count):
        body: dict[str, Any] = {"name": f"t{i}", **MACHINE}
        if i % 3 == 0:
            body["schedule"] = {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}
        if i % 3 == 1:
            body["overlap"] = {"policy": "skip"}
        assert client.post("/api/v1/tasks", json=body).status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/tasks?limit=100", "/tasks/?limit=100"])
def test_a_page_reads_policies_once(
    test_client: TestClient, policy_reads: list[str], path: str
) -> None:
    _create_mixed(test_client, 30)
    policy_reads.clear()
    response = test_client.get(path)
    assert response.status_code == 200, response.text
    page = response.json()
    items = page["items"] if isinstance(page, dict) else page
    assert len(items) == 30
    assert len(policy_reads) == 1, policy_reads


def test_a_page_shows_each_tasks_own_policy_fields(test_client: TestClient) -> None:
    _create_mixed(test_client, 9)
    listed = test_client.get("/api/v1/tasks?limit=100").json()["items"]
    fields = ("misfire", "overlap", "paused", "trigger", "next_fire_times")
    for item in listed:
        alone = test_client.get(f"/api/v1/tasks/{item['id']}").json()
        assert {f: item.get(f) for f in fields} == {f: alone.get(f) for f in fields}
    assert any(item.get("next_fire_times") for item in listed)
    assert any(item["overlap"]["policy"] == "skip" for item in listed)
