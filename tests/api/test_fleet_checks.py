"""A machine task checked at create time against the fleet its agents published
(GET /api/v1/devices): an unknown device, point or command, a write to a read-only
point and a value or argument outside its limits are 422 naming the field; a target
never seen is taken, with a warning. The fleet rows are what an agent's presence
leaves (apply_presence with the example profiles' public points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from api_helpers import assert_error
from sqlmodel import Session

from tme.controller.event_apply import apply_presence
from tme.controller.store.models import Device
from tme.drivers.profile import load_profile
from tme.protocol import Presence

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "profiles"
PUMP = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}
METER = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}
OLD_METER = {"site": "plant-1", "agent": "old-lab", "device": "meter0"}


def _published(engine: Any, site: str, agent: str, devices: dict[str, str]) -> None:
    """An agent's online presence with its devices, as tme.agents.devices describes them."""
    described = [
        {"name": name, "profile": profile, "points": load_profile(PROFILES / f"{profile}.yaml")
         .public_points()}
        for name, profile in devices.items()
    ]  # fmt: skip
    with Session(engine) as session:
        apply_presence(session, Presence(site=site, agent=agent, state="online", devices=described))
        session.commit()


@pytest.fixture
def fleet(app_engine: Any) -> None:
    _published(app_engine, "plant-1", "skid-a", {"pump1": "pump", "tank1": "tank"})
    _published(app_engine, "plant-1", "lab-c", {"meter1": "instrument"})
    # an agent older than published command arguments: its rows have no "args"
    old = [
        {"name": "set_voltage", "kind": "command", "type": "str", "unit": "V", "access": "rw",
         "min": None, "max": None},
        {"name": "level", "kind": "point", "type": "float32", "unit": "%", "access": "r",
         "min": None, "max": None},
    ]  # fmt: skip
    _published(app_engine, "plant-1", "old-lab", {})
    with Session(app_engine) as session:
        session.add(Device(site="plant-1", agent="old-lab", name="meter0", points=old))
        session.commit()


def _task(target: dict[str, str], op: str, **params: Any) -> dict[str, Any]:
    return {"name": f"{op} {params}", "op": op, "target": target, "params": params}


def _refused(test_client: Any, body: dict[str, Any], field: str, *words: str) -> dict[str, Any]:
    error = assert_error(test_client.post("/api/v1/tasks", json=body), 422, field, *words)
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["details"]] == [field], error
    return error


# --- what the fleet shows ------------------------------------------------------------


def test_devices_show_each_serial_commands_argument_limits(test_client, fleet) -> None:
    devices = {d["name"]: d for d in test_client.get("/api/v1/devices").json()}
    commands = {p["name"]: p for p in devices["meter1"]["points"]}
    assert commands["set_voltage"]["args"] == [
        {"type": "float", "min": 0, "max": 30, "choices": None, "pattern": None}
    ]
    assert commands["output"]["args"][0]["choices"] == ["ON", "OFF"]
    assert commands["identify"]["args"] == []  # takes none
    assert commands["set_voltage"]["kind"] == "command"
    old = {p["name"]: p for p in devices["meter0"]["points"]}
    assert old["set_voltage"]["args"] is None  # not published: unknown, not "none"
    pump = {p["name"]: p for p in devices["pump1"]["points"]}
    assert pump["speed_setpoint"]["args"] is None  # a point has none
    schema = test_client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["ArgPublic"]["properties"]) == {"type", "min", "max", "choices", "pattern"}
    assert "args" in schema["PointPublic"]["properties"]


# --- points ----------------------------------------------------------------------------


def test_an_unknown_point_is_refused_with_the_close_names(test_client, fleet, counts) -> None:
    before = counts()
    body = _task(PUMP, "modbus.write", point="speed_setpont", value=1200)
    error = _refused(test_client, body, "params.point", "'speed_setpont'", "did you mean")
    assert "'speed_setpoint'" in error["message"]
    assert counts() == before  # nothing stored
    part = _task(PUMP, "modbus.read", point="speed")
    error = _refused(test_client, part, "params.point", "did you mean")
    assert "'speed_setpoint'" in error["message"] and "'actual_speed'" in error["message"]


def test_a_read_of_unknown_points_names_each_and_lists_the_points(test_client, fleet) -> None:
    body = _task(PUMP, "modbus.read", points=["flow", "zzz"])
    error = _refused(test_client, body, "params.points.1", "'zzz'")
    assert "speed_setpoint" in error["message"]  # none is close: the points are listed
    command = _task(METER, "modbus.read", point="set_voltage")
    _refused(test_client, command, "params.point", "serial command", "serial.command")


def test_a_write_to_a_read_only_point_is_refused(test_client, fleet) -> None:
    body = _task(PUMP, "modbus.write", point="actual_speed", value=10)
    _refused(test_client, body, "params.point", "read-only", "pump1")


def test_a_value_outside_the_limits_is_refused(test_client, fleet) -> None:
    high = _task(PUMP, "modbus.write", point="speed_setpoint", value=9000)
    _refused(test_client, high, "params.value", "above the maximum 3000", "as the agent published")
    low = _task(PUMP, "modbus.write", point="speed_setpoint", value=-1)
    _refused(test_client, low, "params.value", "below the minimum 0")
    wrong = _task(PUMP, "modbus.write", point="run", value=1)
    _refused(test_client, wrong, "params.value", "true or false")


def test_a_task_within_the_envelope_is_created_without_warnings(test_client, fleet) -> None:
    for body in (
        _task(PUMP, "modbus.write", point="speed_setpoint", value=3000, verify=True),
        _task(PUMP, "modbus.read", points=["speed_setpoint", "actual_speed"]),
        _task(METER, "serial.command", command="set_voltage", args=[12.5]),
        _task(METER, "serial.command", command="output", args=["ON"]),
    ):
        response = test_client.post("/api/v1/tasks", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["warnings"] == []


# --- devices and serial commands ----------------------------------------------------


def test_a_device_the_agent_does_not_have_is_refused_naming_its_devices(test_client, fleet) -> None:
    body = _task({**PUMP, "device": "pmup1"}, "modbus.read", point="speed")
    error = _refused(test_client, body, "target.device", "'skid-a'", "'pmup1'", "did you mean")
    assert "'pump1'" in error["message"]
    far = _task({**PUMP, "device": "boiler"}, "modbus.read", point="speed")
    error = _refused(test_client, far, "target.device", "boiler")
    assert "pump1, tank1" in error["message"]


def test_serial_commands_and_arguments_are_checked(test_client, fleet) -> None:
    unknown = _task(METER, "serial.command", command="set_volts", args=[1])
    _refused(test_client, unknown, "params.command", "'set_volts'", "'set_voltage'")
    count = _task(METER, "serial.command", command="set_voltage", args=[])
    _refused(test_client, count, "params.args", "takes 1 argument")
    high = _task(METER, "serial.command", command="set_voltage", args=[31])
    _refused(test_client, high, "params.args.0", "above the maximum 30")
    choice = _task(METER, "serial.command", command="output", args=["MAYBE"])
    _refused(test_client, choice, "params.args.0", "'MAYBE'", "ON")


def test_an_agent_that_publishes_no_arguments_has_them_checked_by_itself(
    test_client, fleet
) -> None:
    body = _task(OLD_METER, "serial.command", command="set_voltage", args=[99, "x"])
    response = test_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text  # its limits are unknown here
    unknown = _task(OLD_METER, "serial.command", command="set_volts", args=[1])
    _refused(test_client, unknown, "params.command", "set_volts")


# --- targets never seen ----------------------------------------------------------------


def test_an_agent_never_seen_is_taken_with_a_warning(test_client, fleet) -> None:
    body = _task({**PUMP, "agent": "skid-b"}, "modbus.write", point="whatever", value=1)
    response = test_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    (warning,) = response.json()["warnings"]
    assert "agent 'skid-b' has never been seen at site 'plant-1'" in warning
    assert "did you mean 'skid-a'" in warning and "queue timeout" in warning
    task = test_client.get(response.headers["Location"]).json()
    assert task["warnings"] == []  # said once, in the answer; never stored


def test_a_site_never_seen_is_taken_with_a_warning(test_client, fleet) -> None:
    body = _task({"site": "plant-2", "agent": "skid-a"}, "noop")
    response = test_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    (warning,) = response.json()["warnings"]
    assert "site 'plant-2' has never been seen" in warning
    assert "plant-1" not in warning  # other sites' names: perhaps outside the caller's grant


def test_a_task_without_an_agent_to_reach_has_no_warnings(test_client, fleet) -> None:
    response = test_client.post("/api/v1/tasks", json={"name": "walk to the valve"})
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == []


# --- batch, change, the documented path ------------------------------------------------


def test_a_batch_names_the_refused_item_and_stores_nothing(test_client, fleet, counts) -> None:
    before = counts()
    tasks = [
        _task(PUMP, "modbus.write", point="speed_setpoint", value=1200),
        _task(PUMP, "modbus.write", point="speed_setpoint", value=9000),
    ]
    response = test_client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    error = assert_error(response, 422, "tasks.1", "above the maximum")
    assert [f["field"] for f in error["details"]] == ["tasks.1.params.value"]
    assert counts() == before
    tasks[1] = _task({**PUMP, "agent": "skid-x"}, "noop")
    response = test_client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 201, response.text
    warnings = [t["warnings"] for t in response.json()["tasks"]]
    assert warnings[0] == [] and "'skid-x' has never been seen" in warnings[1][0]


def test_a_change_of_params_or_target_is_checked(test_client, fleet) -> None:
    body = _task(PUMP, "modbus.write", point="speed_setpoint", value=1200)
    body["schedule"] = {"every_s": 3600}  # no run in flight: its target may change
    task_id = test_client.post("/api/v1/tasks", json=body).json()["id"]
    path = f"/api/v1/tasks/{task_id}"
    params = {"point": "speed_setpoint", "value": 3001}
    error = assert_error(test_client.patch(path, json={"params": params}), 422, "params.value")
    assert "above the maximum" in error["message"]
    moved = test_client.patch(path, json={"target": {**PUMP, "device": "tank1"}})
    assert_error(moved, 422, "params.point", "'speed_setpoint'")  # tank1 has no such point
    assert test_client.get(path).json()["target"] == PUMP  # nothing changed
    elsewhere = test_client.patch(path, json={"target": {**PUMP, "agent": "skid-q"}})
    assert elsewhere.status_code == 200, elsewhere.text
    assert "'skid-q' has never been seen" in elsewhere.json()["warnings"][0]


def test_a_change_of_other_fields_is_not_checked_again(test_client, app_engine, fleet) -> None:
    """A profile that narrowed after the task was made does not block a rename: its
    run is refused by the agent, as before."""
    body = _task(PUMP, "modbus.write", point="speed_setpoint", value=1200)
    task_id = test_client.post("/api/v1/tasks", json=body).json()["id"]
    _published(app_engine, "plant-1", "skid-a", {"pump1": "tank"})  # no speed_setpoint now
    renamed = test_client.patch(f"/api/v1/tasks/{task_id}", json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text


def test_the_documented_create_path_checks_the_same(test_client, fleet) -> None:
    body = _task(PUMP, "modbus.write", point="speed_setpoint", value=9000)
    error = assert_error(test_client.post("/tasks/create", json=body), 422, "params.value")
    assert "above the maximum" in error["message"]


def test_an_agents_argument_pattern_is_matched_by_the_agent_not_here(
    test_client, app_engine: Any
) -> None:
    """A regular expression an agent published is never run in the controller (a
    pathological one would hold a request thread while it backtracks): text of one line
    is taken here, and the agent, whose profile is in force, refuses what does not match.
    Free text without a pattern is still checked here with the envelope's own rule."""
    rows = [
        {"name": "label", "kind": "command", "type": "str", "unit": "", "access": "rw",
         "min": None, "max": None,
         "args": [{"type": "str", "min": None, "max": None, "choices": None,
                   "pattern": "[0-9]{1,3}"}]},
        {"name": "note", "kind": "command", "type": "str", "unit": "", "access": "rw",
         "min": None, "max": None,
         "args": [{"type": "str", "min": None, "max": None, "choices": None, "pattern": None}]},
    ]  # fmt: skip
    _published(app_engine, "plant-1", "lab-p", {})
    with Session(app_engine) as session:
        session.add(Device(site="plant-1", agent="lab-p", name="panel", points=rows))
        session.commit()
    target = {"site": "plant-1", "agent": "lab-p", "device": "panel"}
    taken = test_client.post(
        "/api/v1/tasks",
        json=_task(target, "serial.command", command="label", args=["abc"]),
    )
    assert taken.status_code == 201, taken.text
    _refused(
        test_client,
        _task(target, "serial.command", command="note", args=["OUTP;ON"]),
        "params.args.0",
        "not allowed",
    )
