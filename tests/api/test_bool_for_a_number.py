"""true or false where a number goes is refused with 422 naming the field, and nothing
is stored: pydantic took `"timeout_s": true` as a timeout of 1 s and `"priority":
true` as priority 1 (a YAML `timeout: yes` turned into runs that time out at once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_refused_alone
from fastapi.testclient import TestClient

BOOLS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "create priority": ("POST", "/api/v1/tasks", {"name": "x", "priority": True}, "priority"),
    "create timeout": ("POST", "/api/v1/tasks", {"name": "x", "timeout_s": True}, "timeout_s"),
    "retries": ("POST", "/api/v1/tasks", {"name": "x", "retries": {"max": True}}, "retries.max"),
    "every_s": (
        "POST", "/api/v1/tasks", {"name": "x", "schedule": {"every_s": True}}, "schedule.every_s",
    ),
    "a batch item": (
        "POST", "/api/v1/tasks/batch", {"tasks": [{"name": "x", "queue_timeout_s": False}]},
        "tasks.0.queue_timeout_s",
    ),
    "update": ("PATCH", "/api/v1/tasks/{id}", {"priority": False}, "priority"),
    "the seed's PUT": ("PUT", "/task/{id}/", {"deadline_s": True}, "deadline_s"),
    "a rule's task": (
        "POST", "/api/v1/notifications/rules",
        {"name": "r", "channel": "webhook", "target": "https://hooks.example/x", "task_id": True},
        "task_id",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "field"), BOOLS.values(), ids=BOOLS)
def test_true_or_false_for_a_number_is_refused_naming_the_field(
    test_client: TestClient,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "kept", "priority": 4}).json()
    before = counts()
    answer = test_client.request(method, path.format(id=task["id"]), json=body)
    assert_refused_alone(answer, field, "not true or false", counts, before)
    assert test_client.get(f"/api/v1/tasks/{task['id']}").json()["priority"] == 4
    assert test_client.get("/api/v1/notifications/rules").json() == []


def test_a_point_value_may_still_be_true_or_false(test_client: TestClient) -> None:
    body = {"name": "x", "params": {"done": True}, "priority": 3}
    assert test_client.post("/api/v1/tasks", json=body).status_code == 201
