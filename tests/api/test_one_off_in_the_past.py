"""A one-off `at` already past by more than its misfire grace would never run: it is
refused (422 naming schedule.at) on create, batch create and update; within the grace
it is accepted (it fires once, at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api_helpers import assert_error
from fastapi.testclient import TestClient
from waiting import wait_until


def _at(seconds_ago: float) -> dict[str, str]:
    return {"at": (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()}


def test_a_one_off_long_past_is_refused_naming_the_field(test_client: TestClient) -> None:
    late = {"name": "flush", "schedule": _at(7200)}
    error = assert_error(test_client.post("/api/v1/tasks", json=late), 422, "in the past")
    assert error["details"][0]["field"] == "schedule.at"
    # worded as every other validation error is
    assert error["message"].startswith("invalid request: schedule.at: "), error["message"]
    batch = {"tasks": [{"name": "ok"}, late]}
    error = assert_error(test_client.post("/api/v1/tasks/batch", json=batch), 422, "tasks.1")
    assert error["details"][0]["field"] == "tasks.1.schedule.at"
    assert error["message"].startswith("invalid request: tasks.1: schedule.at: "), error
    assert test_client.get("/api/v1/tasks").json()["items"] == []  # nothing stored


def test_a_one_off_within_its_grace_is_accepted(test_client: TestClient) -> None:
    made = test_client.post("/api/v1/tasks", json={"name": "now", "schedule": _at(5)})
    assert made.status_code == 201, made.text
    grace = {"misfire": {"grace_s": 3 * 3600, "policy": "run_once"}}
    made = test_client.post("/api/v1/tasks", json={"name": "late", "schedule": _at(7200), **grace})
    assert made.status_code == 201, made.text


def test_an_update_to_a_one_off_long_past_is_refused(test_client: TestClient) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "flush"}).json()
    url = f"/api/v1/tasks/{task['id']}"
    assert_error(test_client.patch(url, json={"schedule": _at(7200)}), 422, "schedule.at")
    assert test_client.get(url).json()["schedule"] is None


def test_a_one_off_due_within_its_grace_shows_its_time_as_the_next_fire(
    test_client: TestClient,
) -> None:
    """A one-off whose time came within its grace fires at once: the task answers that
    time in next_fire_times, when it is made and when it is resumed after its time came
    during the pause. It answered none, and `tme task resume` said it would not fire."""
    at = _at(5)
    made = test_client.post("/api/v1/tasks", json={"name": "now", "schedule": at})
    assert made.status_code == 201, made.text
    assert _fire_times(made.json()) == [datetime.fromisoformat(at["at"])]
    later = {"at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    task = test_client.post("/api/v1/tasks", json={"name": "paused", "schedule": later}).json()
    assert test_client.post(f"/api/v1/tasks/{task['id']}/pause").status_code == 200
    at = _at(5)
    changed = test_client.patch(f"/api/v1/tasks/{task['id']}", json={"schedule": at})
    assert changed.status_code == 200, changed.text
    resumed = test_client.post(f"/api/v1/tasks/{task['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert _fire_times(resumed.json()) == [datetime.fromisoformat(at["at"])]


def _fire_times(task: dict[str, object]) -> list[datetime]:
    times = task["next_fire_times"]
    assert isinstance(times, list)
    return [datetime.fromisoformat(str(t)) for t in times]


def test_a_one_off_that_fired_shows_no_next_fire_once_paused_and_resumed(
    test_client: TestClient,
) -> None:
    """A pause and resume re-anchor a schedule but keep which slot it handled last: a
    one-off that already fired within its grace was owed again, so the task answered
    its time as the next fire, and the scheduler tried its slot a second time (refused
    by the slot's key, with a warning)."""
    made = test_client.post("/api/v1/tasks", json={"name": "once", "schedule": _at(2)}).json()
    runs = f"/api/v1/tasks/{made['id']}/runs"
    wait_until(lambda: test_client.get(runs).json()["items"], what="the one-off to fire")
    assert test_client.post(f"/api/v1/tasks/{made['id']}/pause").status_code == 200
    resumed = test_client.post(f"/api/v1/tasks/{made['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["next_fire_times"] == []
