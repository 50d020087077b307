"""A modbus.write's params.expect (its physical effect) is checked at create and update:
a point of the target device, a value of that point's type, a tolerance only for a
number, a wait above 0 and below the task's timeout. Each refusal is a 422 naming the
field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import assert_error
from test_fleet_checks import PUMP, _published

EFFECT = {"point": "actual_speed", "tolerance": 20, "within_s": 10}


@pytest.fixture
def fleet(app_engine: Any) -> None:
    _published(app_engine, "plant-1", "skid-a", {"pump1": "pump", "tank1": "tank"})


def _write(expect: Any, value: Any = 1200, **fields: Any) -> dict[str, Any]:
    params = {"point": "speed_setpoint", "value": value, "expect": expect}
    return {"name": "set speed", "op": "modbus.write", "target": PUMP, "params": params, **fields}


def _refused(test_client: Any, body: dict[str, Any], field: str, *words: str) -> None:
    error = assert_error(test_client.post("/api/v1/tasks", json=body), 422, field, *words)
    assert [f["field"] for f in error["details"]] == [field], error


def test_a_write_with_its_effect_is_created_as_given(test_client, fleet, counts) -> None:
    made = test_client.post("/api/v1/tasks", json=_write(EFFECT, timeout_s=15))
    assert made.status_code == 201, made.text
    assert made.json()["params"]["expect"] == {**EFFECT, "tolerance": 20.0, "within_s": 10.0}
    assert made.json()["warnings"] == []


@pytest.mark.parametrize(
    ("expect", "value", "field", "words"),
    [
        ({"point": "actual_sped", "within_s": 1}, 1200, "params.expect.point", ["actual_speed"]),
        ({"point": "running", "within_s": 1}, 1200, "params.expect.value", ["true or false"]),
        (
            {"point": "running", "value": True, "tolerance": 1, "within_s": 1},
            1200,
            "params.expect.tolerance",
            ["matched exactly"],
        ),
        (
            {"point": "actual_speed", "value": True, "within_s": 1},
            1200,
            "params.expect.value",
            ["reads a number, not true"],
        ),
        (
            {"point": "actual_speed", "tolerance": -1, "within_s": 1},
            1200,
            "params.expect.tolerance",
            [],
        ),
        ({"point": "actual_speed", "within_s": 0}, 1200, "params.expect.within_s", []),
        ({"point": "actual_speed"}, 1200, "params.expect.within_s", ["required"]),
        ({"point": "actual_speed", "within_s": 1, "after": 1}, 1200, "params.expect.after", []),
    ],
)
def test_a_bad_expect_is_refused_naming_its_field(
    test_client, fleet, counts, expect: Any, value: Any, field: str, words: list[str]
) -> None:
    before = counts()
    _refused(test_client, _write(expect, value), field, *words)
    assert counts() == before


def test_the_wait_must_end_before_the_tasks_timeout(test_client, fleet) -> None:
    _refused(
        test_client,
        _write(EFFECT, timeout_s=10),
        "params.expect.within_s",
        "below the task's timeout (10 s, its timeout_s)",
    )
    long_wait = {**EFFECT, "within_s": 30}  # the default timeout is 30 s
    _refused(
        test_client, _write(long_wait), "params.expect.within_s", "30 s, tasks.default_timeout_s"
    )
    batch = {"tasks": [_write(EFFECT, timeout_s=20), _write(EFFECT, timeout_s=5)]}
    answer = test_client.post("/api/v1/tasks/batch", json=batch)
    assert_error(answer, 422, "tasks.1.params.expect.within_s")


def test_an_update_is_checked_as_the_task_then_stands(test_client, fleet) -> None:
    task_id = test_client.post("/api/v1/tasks", json=_write(EFFECT, timeout_s=15)).json()["id"]
    for path in (f"/api/v1/tasks/{task_id}", f"/task/{task_id}/"):
        answer = test_client.patch(path, json={"timeout_s": 10})
        assert_error(answer, 422, "params.expect.within_s", "below the task's timeout (10 s")
    params = {
        "point": "speed_setpoint",
        "value": 1200,
        "expect": {"point": "running", "within_s": 1},
    }
    answer = test_client.patch(f"/api/v1/tasks/{task_id}", json={"params": params})
    assert_error(answer, 422, "params.expect.value", "true or false")
    task = test_client.get(f"/api/v1/tasks/{task_id}").json()
    assert task["timeout_s"] == 15 and task["params"]["expect"]["point"] == "actual_speed"
    ok = test_client.patch(f"/api/v1/tasks/{task_id}", json={"timeout_s": 11})
    assert ok.status_code == 200, ok.text
