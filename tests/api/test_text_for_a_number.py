"""Text where a number goes is refused with 422 naming the field, and nothing is stored,
as true or false is (test_bool_for_a_number.py): pydantic took `"priority": "5"` as 5
and a write's `"value": "1200"` as 1200 (and `"yes"` as true), so a typo in a script or
a form reached the machine as a number nobody sent. The CLI reads `--param value=1200`
as the number on purpose (tests/sdk/test_cli_task.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_error, assert_refused_alone
from fastapi.testclient import TestClient
from rollout_fleet import plant, speed
from sqlalchemy.engine import Engine

PUMP = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}
UNSEEN = {"site": "plant-9", "agent": "skid-z", "device": "pump9"}  # nothing published
METER = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}


def _write(target: dict[str, str] = PUMP, **params: Any) -> dict[str, Any]:
    given = {"point": "speed_setpoint", "value": 1200, **params}
    return {"name": "set speed", "op": "modbus.write", "target": target, "params": given}


def _expect(**fields: Any) -> dict[str, Any]:
    return _write(expect={"point": "actual_speed", "within_s": 10, **fields})


TASKS = "/api/v1/tasks"
ROLLOUTS = "/api/v1/rollouts"
TEXTS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "create priority": ("POST", TASKS, {"name": "x", "priority": "5"}, "priority"),
    "create timeout": ("POST", TASKS, {"name": "x", "timeout_s": "30"}, "timeout_s"),
    "retries.max": ("POST", TASKS, {"name": "x", "retries": {"max": "2"}}, "retries.max"),
    "retries.backoff_s": (
        "POST", TASKS, {"name": "x", "retries": {"backoff_s": "2"}}, "retries.backoff_s",
    ),
    "every_s": ("POST", TASKS, {"name": "x", "schedule": {"every_s": "30"}}, "schedule.every_s"),
    "misfire grace": (
        "POST", TASKS, {"name": "x", "misfire": {"grace_s": "60"}}, "misfire.grace_s",
    ),
    "overlap max": (
        "POST", TASKS, {"name": "x", "overlap": {"policy": "allow", "max": "3"}}, "overlap.max",
    ),
    "a dependency": ("POST", TASKS, {"name": "x", "depends_on": [{"task": "{id}"}]},
                     "depends_on.0.task"),
    "a batch item": (
        "POST", f"{TASKS}/batch", {"tasks": [{"name": "x", "queue_timeout_s": "30"}]},
        "tasks.0.queue_timeout_s",
    ),
    "the documented create": ("POST", "/tasks/create", {"name": "x", "deadline_s": "60"},
                              "deadline_s"),
    "update": ("PATCH", f"{TASKS}/{{id}}", {"priority": "3"}, "priority"),
    "the seed's PUT": ("PUT", "/task/{id}/", {"deadline_s": "60"}, "deadline_s"),
    "a rule's task": (
        "POST", "/api/v1/notifications/rules",
        {"name": "r", "channel": "webhook", "target": "https://hooks.example/x", "task_id": "{id}"},
        "task_id",
    ),
    "a sleep's seconds": (
        "POST", TASKS,
        {"name": "x", "op": "sleep", "target": {"site": "plant-1", "agent": "skid-a"},
         "params": {"seconds": "3"}},
        "params.seconds",
    ),
    "a write's value": ("POST", TASKS, _write(value="1200"), "params.value"),
    "a write's value, unpublished": ("POST", TASKS, _write(UNSEEN, value="1200"), "params.value"),
    "a write's value in words": ("POST", TASKS, _write(value="yes"), "params.value"),
    "expect.value": ("POST", TASKS, _expect(value="1200"), "params.expect.value"),
    "expect.tolerance": ("POST", TASKS, _expect(tolerance="20"), "params.expect.tolerance"),
    "expect.within_s": ("POST", TASKS, _expect(within_s="10"), "params.expect.within_s"),
    "a write changed": (
        "PATCH", f"{TASKS}/{{id}}", {"params": {"point": "speed_setpoint", "value": "900"}},
        "params.value",
    ),
    "a check's write": (
        "POST", TASKS,
        {"name": "c", "op": "device.check", "target": PUMP,
         "params": {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": "1200"}}},
        "params.params.value",
    ),
    "a rollout's value": ("POST", ROLLOUTS, speed(value="1200"), "params.value"),
    "a rollout's priority": ("POST", ROLLOUTS, speed(priority="5"), "priority"),
    "a rollout's timeout": ("POST", ROLLOUTS, speed(timeout_s="30"), "timeout_s"),
    "a rollout's retries": ("POST", ROLLOUTS, speed(retries={"max": "1"}), "retries.max"),
    "a rollout's abort": (
        "POST", ROLLOUTS, speed(abort={"failed_percent": "50"}), "abort.failed_percent",
    ),
    "a preview's abort": (
        "POST", f"{ROLLOUTS}/preview", speed(abort={"min_settled": "3"}), "abort.min_settled",
    ),
}  # fmt: skip


@pytest.fixture
def fleet(app_engine: Engine) -> None:
    plant(app_engine)


@pytest.mark.parametrize(("method", "path", "body", "field"), TEXTS.values(), ids=TEXTS)
def test_text_for_a_number_is_refused_naming_the_field(
    test_client: TestClient,
    fleet: None,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    # a write on a yearly schedule: no run of it moves while the request is answered
    kept = {**_write(), "name": "kept", "priority": 4, "schedule": {"cron": "0 0 1 1 *"}}
    task = test_client.post(TASKS, json=kept).json()
    before = counts()
    given = _with_id(body, task["id"])
    answer = test_client.request(method, path.format(id=task["id"]), json=given)
    assert_refused_alone(answer, field, "not text", counts, before)
    stored = test_client.get(f"{TASKS}/{task['id']}").json()
    assert (stored["priority"], stored["params"]["value"]) == (4, 1200)
    assert test_client.get("/api/v1/notifications/rules").json() == []
    assert test_client.get(ROLLOUTS).json() == []


def _with_id(body: Any, task_id: int) -> Any:
    """`body` with "{id}" read as the kept task's id (a number, the way it should go)."""
    if body == "{id}":
        return str(task_id)  # the text of the id: what is refused
    if isinstance(body, dict):
        return {key: _with_id(value, task_id) for key, value in body.items()}
    if isinstance(body, list):
        return [_with_id(value, task_id) for value in body]
    return body


def test_the_refusal_says_the_number_to_send(test_client: TestClient, fleet: None) -> None:
    answer = test_client.post(TASKS, json=_write(value=" 1200 "))
    assert_error(answer, 422, "params.value", "not text: send 1200 without quotes")
    words = test_client.post(TASKS, json=_write(value="fast"))
    assert "without quotes" not in assert_error(words, 422, "params.value")["message"]


def test_text_where_text_may_go_is_still_taken(test_client: TestClient, fleet: None) -> None:
    """A serial argument may be text (the profile says which): taken by the schema, and a
    text argument of a number argument is refused by the fleet check, as the agent does."""
    text = {"name": "on", "op": "serial.command", "target": METER,
            "params": {"command": "output", "args": ["ON"]}}  # fmt: skip
    assert test_client.post(TASKS, json=text).status_code == 201
    number = {**text, "params": {"command": "set_voltage", "args": ["12.5"]}}
    assert_error(test_client.post(TASKS, json=number), 422, "params.args.0", "needs a number")
    free = {"name": "x", "params": {"value": "1200"}}  # an external task's params: free-form
    assert test_client.post(TASKS, json=free).json()["params"] == {"value": "1200"}
