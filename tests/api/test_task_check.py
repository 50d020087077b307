"""POST /api/v1/tasks/{id}/check: a check (device.check) of a device task, started as a
task of its own whose agent answers what the task would do; nothing else is changed."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import assert_error
from test_fleet_checks import METER, PUMP, fleet  # noqa: F401  (its fixture)

MORNING = {"cron": "0 6 * * 1-5"}


def _create(test_client: Any, **body: Any) -> dict[str, Any]:
    response = test_client.post("/api/v1/tasks", json={"name": "morning start", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_check_starts_a_check_task_of_the_same_op_and_params(test_client, fleet) -> None:  # noqa: F811
    start = {"point": "speed_setpoint", "value": 1200}
    task = _create(test_client, op="modbus.write", target=PUMP, params=start, schedule=MORNING)
    response = test_client.post(f"/api/v1/tasks/{task['id']}/check")
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["task_id"] != task["id"]
    check = test_client.get(f"/api/v1/tasks/{run['task_id']}").json()
    assert check["name"] == "check morning start"
    assert check["op"] == "device.check"
    assert {k: check["target"][k] for k in PUMP} == PUMP
    assert check["params"] == {"op": "modbus.write", "params": {**start, "verify": False}}
    assert check["queue_timeout_s"] == 60
    assert check["latest_run_id"] == run["id"]
    task_after = test_client.get(f"/api/v1/tasks/{task['id']}").json()
    assert (task_after["status"], task_after["latest_run_id"]) == ("idle", None)


def test_only_a_device_task_can_be_checked(test_client, fleet, counts) -> None:  # noqa: F811
    task = _create(test_client, op="external", schedule=MORNING)
    before = counts()
    error = assert_error(
        test_client.post(f"/api/v1/tasks/{task['id']}/check"), 422, "cannot be checked"
    )
    assert [f["field"] for f in error["details"]] == ["op"]
    assert counts() == before
    assert_error(test_client.post("/api/v1/tasks/999999/check"), 404)


def test_a_viewer_cannot_check(test_client, fleet, make_token) -> None:  # noqa: F811
    task = _create(
        test_client,
        op="modbus.read",
        target=PUMP,
        params={"point": "actual_speed"},
        schedule=MORNING,
    )
    viewer = {"Authorization": f"Bearer {make_token('viewer')}"}
    assert_error(test_client.post(f"/api/v1/tasks/{task['id']}/check", headers=viewer), 403)


def test_a_check_created_directly_has_its_checked_params_validated(test_client, fleet) -> None:  # noqa: F811
    body = {
        "name": "check",
        "op": "device.check",
        "target": PUMP,
        "params": {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": "fast"}},
    }
    error = assert_error(test_client.post("/api/v1/tasks", json=body), 422, "params.params.value")
    assert [f["field"] for f in error["details"]] == ["params.params.value"]
    body["params"] = {"op": "shell"}
    assert_error(test_client.post("/api/v1/tasks", json=body), 422, "params.op")


def test_a_check_created_directly_is_checked_against_the_fleet_under_its_params(
    test_client,
    fleet,  # noqa: F811
) -> None:
    body = {
        "name": "check",
        "op": "device.check",
        "target": PUMP,
        "params": {"op": "modbus.write", "params": {"point": "speed_setpont", "value": 5}},
    }
    error = assert_error(
        test_client.post("/api/v1/tasks", json=body), 422, "params.params.point", "did you mean"
    )
    assert [f["field"] for f in error["details"]] == ["params.params.point"]


@pytest.mark.parametrize(
    ("target", "checked", "field"),
    [
        (PUMP, {"op": "modbus.read", "params": {"points": ["flow", "zzz"]}}, "points.1"),
        (PUMP, {"op": "modbus.write", "params": {"point": "actual_speed", "value": 1}}, "point"),
        (
            PUMP,
            {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": 9e3}},
            "value",
        ),
        (
            METER,
            {"op": "serial.command", "params": {"command": "set_volts", "args": []}},
            "command",
        ),
        (METER, {"op": "serial.command", "params": {"command": "set_voltage"}}, "args"),
        (METER, {"op": "serial.command", "params": {"command": "output", "args": ["x"]}}, "args.0"),
    ],
)
def test_each_fleet_refusal_of_a_check_names_the_checked_params(
    test_client: Any,
    fleet: None,  # noqa: F811
    target: dict[str, str],
    checked: dict[str, Any],
    field: str,
) -> None:
    body = {"name": "check", "op": "device.check", "target": target, "params": checked}
    error = assert_error(test_client.post("/api/v1/tasks", json=body), 422)
    assert [f["field"] for f in error["details"]] == [f"params.params.{field}"]
    assert error["message"].startswith(f"invalid request: params.params.{field}: "), error
    batch = test_client.post("/api/v1/tasks/batch", json={"tasks": [body]})
    error = assert_error(batch, 422)
    assert [f["field"] for f in error["details"]] == [f"tasks.0.params.params.{field}"]
    assert error["message"].startswith(f"invalid request: tasks.0: params.params.{field}: ")


def test_a_check_of_a_device_its_agent_lacks_names_the_target(test_client, fleet) -> None:  # noqa: F811
    checked = {"op": "modbus.read", "params": {"point": "speed"}}
    target = {**PUMP, "device": "pmup1"}
    body = {"name": "check", "op": "device.check", "target": target, "params": checked}
    error = assert_error(test_client.post("/api/v1/tasks", json=body), 422, "did you mean")
    assert [f["field"] for f in error["details"]] == ["target.device"]
    assert error["message"].startswith("invalid request: target.device: "), error


def test_a_check_task_is_listed_only_when_asked_for_by_its_op(test_client, fleet) -> None:  # noqa: F811
    """Each check leaves a task behind: a list of tasks would fill up with them."""
    task = _create(test_client, op="modbus.read", target=PUMP, params={"point": "actual_speed"})
    checked = test_client.post(f"/api/v1/tasks/{task['id']}/check").json()

    def listed(query: str = "") -> list[int]:
        page = test_client.get(f"/api/v1/tasks{query}")
        assert page.status_code == 200, page.text
        return [t["id"] for t in page.json()["items"]]

    assert task["id"] in listed() and checked["task_id"] not in listed()
    assert checked["task_id"] not in listed("?q=check")
    assert listed("?op=device.check") == [checked["task_id"]]
    assert test_client.get(f"/api/v1/tasks/{checked['task_id']}").status_code == 200
