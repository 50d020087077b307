"""Text or a number where true or false goes is refused with 422 naming the field, and
nothing is stored, as text and true/false for a number are (test_text_for_a_number.py):
pydantic took a write's `"verify": "yes"` and `"verify": 1` as true, `"verify": "no"`
and `"off"` as false, and `"repeatable": "y"` as a write that may be done twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_refused_alone
from fastapi.testclient import TestClient
from rollout_fleet import plant, speed
from sqlalchemy.engine import Engine
from test_text_for_a_number import PUMP, TASKS, _write

NOT_BOOLS: dict[str, tuple[str, str, dict[str, Any], str, str]] = {
    "verify in words": ("POST", TASKS, _write(verify="yes"), "params.verify", "not text"),
    "verify as 1": ("POST", TASKS, _write(verify=1), "params.verify", "not a number (1)"),
    "verify as 0": ("POST", TASKS, _write(verify=0), "params.verify", "not a number (0)"),
    "verify quoted": (
        "POST", TASKS, _write(verify="false"), "params.verify", "send false without quotes",
    ),
    "repeatable": (
        "POST", TASKS, {"name": "x", "retries": {"repeatable": "y"}}, "retries.repeatable",
        "not text",
    ),
    "a batch item's verify": (
        "POST", f"{TASKS}/batch", {"tasks": [_write(verify="on")]}, "tasks.0.params.verify",
        "not text",
    ),
    "a write changed": (
        "PATCH", f"{TASKS}/{{id}}",
        {"params": {"point": "speed_setpoint", "value": 900, "verify": "true"}},
        "params.verify", "send true without quotes",
    ),
    "a check's write": (
        "POST", TASKS,
        {"name": "c", "op": "device.check", "target": PUMP,
         "params": {"op": "modbus.write",
                    "params": {"point": "speed_setpoint", "value": 1200, "verify": 1}}},
        "params.params.verify", "not a number",
    ),
    "a rollout's skip_refused": (
        "POST", "/api/v1/rollouts", speed(skip_refused="yes"), "skip_refused", "not text",
    ),
}  # fmt: skip


@pytest.fixture
def fleet(app_engine: Engine) -> None:
    plant(app_engine)


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "said"), NOT_BOOLS.values(), ids=list(NOT_BOOLS)
)
def test_text_or_a_number_for_true_or_false_is_refused_naming_the_field(
    test_client: TestClient,
    fleet: None,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    said: str,
) -> None:
    kept = {**_write(verify=True), "name": "kept", "schedule": {"cron": "0 0 1 1 *"}}
    task = test_client.post(TASKS, json=kept).json()
    before = counts()
    answer = test_client.request(method, path.format(id=task["id"]), json=body)
    error = assert_refused_alone(answer, field, "Input should be true or false", counts, before)
    assert said in error["message"]
    stored = test_client.get(f"{TASKS}/{task['id']}").json()
    assert (stored["params"]["value"], stored["params"]["verify"]) == (1200, True)
    assert test_client.get("/api/v1/rollouts").json() == []


def test_true_and_false_are_taken(test_client: TestClient, fleet: None) -> None:
    made = test_client.post(TASKS, json=_write(verify=False))
    assert made.status_code == 201, made.text
    assert made.json()["params"]["verify"] is False
    body = {"name": "x", "retries": {"max": 1, "repeatable": True}}
    assert test_client.post(TASKS, json=body).json()["retries"]["repeatable"] is True
