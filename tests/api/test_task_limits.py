"""tasks.max_timeout_s and tasks.max_retries bound what a task may ask for, on every way
a task is made or changed. Both were read by nothing: a task took the schema's widest
bounds (a day, 20 retries) whatever the controller's settings said."""

from __future__ import annotations

import pytest

from tme.config import Settings


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    return Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        tasks={"max_timeout_s": 600, "max_retries": 3},
    )


def _refusal(answer, *fields: str) -> str:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert [e["field"] for e in error["details"]] == list(fields)
    return str(error["message"])


def test_create_beyond_the_limits_is_refused_naming_field_and_setting(test_client) -> None:
    body = {"name": "long", "timeout_s": 601, "retries": {"max": 4}}
    for path in ("/api/v1/tasks", "/tasks/create"):
        message = _refusal(test_client.post(path, json=body), "timeout_s", "retries.max")
        assert message == (
            "invalid request: timeout_s: at most 600 s (tasks.max_timeout_s);"
            " retries.max: at most 3 (tasks.max_retries)"
        )
    made = test_client.post("/api/v1/tasks", json={**body, "timeout_s": 600, "retries": {"max": 3}})
    assert made.status_code == 201, made.text


def test_a_batch_names_the_item_beyond_the_limits(test_client) -> None:
    tasks = [{"name": "ok"}, {"name": "retries", "retries": {"max": 9}}]
    answer = test_client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert "tasks.1.retries.max: at most 3" in _refusal(answer, "tasks.1.retries.max")
    assert test_client.get("/api/v1/tasks").json()["items"] == []  # all or none


def test_an_update_beyond_the_limits_is_refused(test_client) -> None:
    task_id = test_client.post("/api/v1/tasks", json={"name": "t"}).json()["id"]
    for path in (f"/api/v1/tasks/{task_id}", f"/task/{task_id}/"):
        answer = test_client.patch(path, json={"timeout_s": 3600})
        assert "timeout_s: at most 600 s" in _refusal(answer, "timeout_s")
    assert test_client.patch(f"/api/v1/tasks/{task_id}", json={"priority": 7}).status_code == 200
