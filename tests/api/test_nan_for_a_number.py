"""NaN or Infinity where a number goes (JSON as Python writes it: `NaN`, `Infinity`)
is refused with 422 naming the field and saying it must be finite, and nothing is
stored: a NaN timeout was answered "should be less than or equal to 86400", a NaN
every_s "greater than or equal to 1", neither of which says what was wrong."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient

NANS: dict[str, tuple[str, str, str, str]] = {
    "create timeout": ("POST", "/api/v1/tasks", '{"name": "x", "timeout_s": NaN}', "timeout_s"),
    "every_s": (
        "POST", "/api/v1/tasks", '{"name": "x", "schedule": {"every_s": NaN}}', "schedule.every_s",
    ),
    "backoff": (
        "POST", "/api/v1/tasks", '{"name": "x", "retries": {"max": 2, "backoff_s": Infinity}}',
        "retries.backoff_s",
    ),
    "a batch item": (
        "POST", "/api/v1/tasks/batch", '{"tasks": [{"name": "x", "deadline_s": -Infinity}]}',
        "tasks.0.deadline_s",
    ),
    "update": ("PATCH", "/api/v1/tasks/{id}", '{"queue_timeout_s": NaN}', "queue_timeout_s"),
    "the seed's PUT": ("PUT", "/task/{id}/", '{"misfire": {"grace_s": NaN}}', "misfire.grace_s"),
}  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "field"), NANS.values(), ids=NANS)
def test_nan_or_infinity_for_a_number_is_refused_as_not_finite(
    test_client: TestClient,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    body: str,
    field: str,
) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "kept", "timeout_s": 5}).json()
    before = counts()
    answer = test_client.request(
        method,
        path.format(id=task["id"]),
        content=body,
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(answer, 422, field, "finite number")
    assert [d["field"] for d in error["details"]] == [field]
    assert counts() == before
    assert test_client.get(f"/api/v1/tasks/{task['id']}").json()["timeout_s"] == 5
