"""GET /api/v1/devices/{device}/values: each point's latest value from succeeded runs,
through the API, the SDK and `tme device values`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

import tme
from tme.cli.main import app as cli_app
from tme.controller.services import runs as run_service
from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Device, Run, utcnow
from tme.errors import NotFound
from tme.fleet_schemas import DeviceValues
from tme.schemas import TaskCreate

PUMP_POINTS = [
    {"name": "speed", "kind": "point", "type": "float32", "unit": "rpm", "access": "r"},
    {"name": "speed_setpoint", "kind": "point", "type": "uint16", "unit": "rpm", "access": "rw"},
    {"name": "running", "kind": "point", "type": "bool", "unit": None, "access": "r"},
]
METER_POINTS = [
    {"name": "measure_voltage", "kind": "command", "type": "float", "unit": "V", "access": "r"},
]


def _device(engine: Any, site: str, agent: str, name: str, points: list[dict]) -> None:
    with Session(engine) as session:
        session.add(Device(site=site, agent=agent, name=name, points=points))
        session.commit()


def _finished_run(
    engine: Any, target: dict, op: str, params: dict, result: dict, final: str = "succeeded"
) -> str:
    body = TaskCreate.model_validate(
        {"name": f"{op} {params}", "op": op, "target": target, "params": params}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        session.flush()
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        for state in ("queued", "dispatched", "running", final):
            run_service.transition(
                session, run, state, source="agent", result=result if state == final else None
            )
        session.commit()
        return run.id


PUMP = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}


@pytest.fixture
def pump(app_engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    _device(app_engine, "plant-1", "skid-a", "pump1", PUMP_POINTS)
    older = _finished_run(
        app_engine, PUMP, "modbus.read", {"points": ["speed", "running"]},
        {"values": {"speed": {"value": 900.0, "unit": "rpm"},
                    "running": {"value": True, "unit": None}}},
    )  # fmt: skip
    newer = _finished_run(
        app_engine, PUMP, "modbus.read", {"point": "speed"},
        {"values": {"speed": {"value": 1195.5, "unit": "rpm"}}},
    )  # fmt: skip
    write = {"point": "speed_setpoint", "value": 1200, "verify": True}
    written = _finished_run(
        app_engine, PUMP, "modbus.write", write,
        {"point": "speed_setpoint", "written": 1200, "unit": "rpm", "read_back": 1200},
    )  # fmt: skip
    # a failed read says nothing about the machine: it must not hide the value above
    _finished_run(
        app_engine, PUMP, "modbus.read", {"point": "speed"},
        {"values": {"speed": {"value": -1, "unit": "rpm"}}}, final="failed",
    )  # fmt: skip
    return {"older": older, "newer": newer, "written": written}


def _points(body: dict) -> dict[str, dict]:
    return {p["name"]: p for p in body["points"]}


def test_each_point_has_its_latest_value_unit_time_and_run(test_client, pump) -> None:
    response = test_client.get("/api/v1/devices/pump1/values")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["site"], body["agent"], body["name"]) == ("plant-1", "skid-a", "pump1")
    points = _points(body)
    assert list(points) == ["speed", "speed_setpoint", "running"]  # the profile's order
    speed = points["speed"]
    assert (speed["value"], speed["unit"], speed["run_id"]) == (1195.5, "rpm", pump["newer"])
    assert speed["at"] is not None and speed["op"] == "modbus.read"
    setpoint = points["speed_setpoint"]
    assert (setpoint["value"], setpoint["run_id"]) == (1200, pump["written"])
    assert (points["running"]["value"], points["running"]["run_id"]) == (True, pump["older"])


def test_a_write_without_verify_shows_what_it_wrote_said_unread(test_client, app_engine):  # type: ignore[no-untyped-def]
    """The device took the write (its answer echoes it) but nothing read the point since:
    the value is what was written, said as not read; a point no run touched has none."""
    _device(app_engine, "plant-1", "skid-a", "pump1", PUMP_POINTS)
    verified = {"point": "speed_setpoint", "value": 1200, "verify": True}
    _finished_run(
        app_engine, PUMP, "modbus.write", verified,
        {"point": "speed_setpoint", "written": 1200, "unit": "rpm", "read_back": 1200},
    )  # fmt: skip
    unverified = _finished_run(
        app_engine, PUMP, "modbus.write", {"point": "speed_setpoint", "value": 800},
        {"point": "speed_setpoint", "written": 800, "unit": "rpm"},
    )  # fmt: skip
    points = _points(test_client.get("/api/v1/devices/pump1/values").json())
    setpoint = points["speed_setpoint"]
    assert (setpoint["value"], setpoint["read"], setpoint["run_id"]) == (800, False, unverified)
    assert setpoint["unit"] == "rpm"
    assert points["speed"]["value"] is None and points["speed"]["run_id"] is None
    assert points["speed"]["unit"] == "rpm"  # still described, from the profile


def test_a_write_that_waited_for_its_effect_shows_the_feedback_point_as_read(
    test_client, app_engine
) -> None:  # type: ignore[no-untyped-def]
    _device(app_engine, "plant-1", "skid-a", "pump1", PUMP_POINTS)
    expect = {"point": "speed", "tolerance": 20, "within_s": 5}
    effect = {"point": "speed", "value": 1195.5, "expected": 1200, "tolerance": 20,
              "unit": "rpm", "after_s": 0.8, "reached": True}  # fmt: skip
    write = {"point": "speed_setpoint", "value": 1200, "expect": expect}
    run = _finished_run(
        app_engine, PUMP, "modbus.write", write,
        {"point": "speed_setpoint", "written": 1200, "unit": "rpm", "effect": effect},
    )  # fmt: skip
    points = _points(test_client.get("/api/v1/devices/pump1/values").json())
    speed = points["speed"]
    assert (speed["value"], speed["read"], speed["run_id"]) == (1195.5, True, run)
    assert (points["speed_setpoint"]["value"], points["speed_setpoint"]["read"]) == (1200, False)


STOPPABLE_POINTS = [
    {"name": "run", "kind": "point", "type": "bool", "access": "rw", "safe_value": False},
    {"name": "speed_setpoint", "kind": "point", "type": "uint16", "unit": "rpm",
     "access": "rw", "safe_value": 0},
    {"name": "speed", "kind": "point", "type": "float32", "unit": "rpm", "access": "r"},
]  # fmt: skip


def test_after_a_stop_its_points_show_what_it_read_back_or_else_wrote_said_unread(
    test_client, app_engine
) -> None:  # type: ignore[no-untyped-def]
    """A stop writes the safe values over what a verified write set: the values are the
    stop's, as the device read them back; one it could not read back is what it wrote,
    said as not read."""
    pump2 = PUMP | {"device": "pump2"}
    _device(app_engine, "plant-1", "skid-a", "pump2", STOPPABLE_POINTS)
    read = _finished_run(
        app_engine, pump2, "modbus.read", {"points": ["run", "speed"]},
        {"values": {"run": {"value": True}, "speed": {"value": 1190.0, "unit": "rpm"}}},
    )  # fmt: skip
    write = {"point": "speed_setpoint", "value": 1200, "verify": True}
    _finished_run(
        app_engine, pump2, "modbus.write", write,
        {"point": "speed_setpoint", "written": 1200, "unit": "rpm", "read_back": 1200},
    )  # fmt: skip
    stopped = _finished_run(
        app_engine, pump2, "device.stop", {"reason": "leak"},
        {"stopped": "pump2", "written": {"run": False, "speed_setpoint": 0},
         "read_back": {"speed_setpoint": 0}, "read_back_error": "no answer"},
    )  # fmt: skip
    points = _points(test_client.get("/api/v1/devices/pump2/values").json())
    setpoint, run = points["speed_setpoint"], points["run"]
    assert (setpoint["value"], setpoint["read"], setpoint["run_id"]) == (0, True, stopped)
    assert (setpoint["unit"], setpoint["op"]) == ("rpm", "device.stop")
    assert (run["value"], run["read"], run["run_id"]) == (False, False, stopped)
    assert (points["speed"]["run_id"], points["speed"]["read"]) == (read, True)  # not written


def _latch(engine: Any, at: str) -> None:
    """pump1 stopped by its agent on link loss, latched at `at` (as its presence says)."""
    with Session(engine) as session:
        device = session.exec(select(Device).where(Device.name == "pump1")).one()
        device.stopped = {"by": "agent skid-a (link loss)", "reason": "link lost", "at": at}
        session.add(device)
        session.commit()


def test_values_seen_before_a_stop_its_agent_made_say_so(test_client, app_engine, pump) -> None:  # type: ignore[no-untyped-def]
    """An agent that stopped the pump on link loss wrote its safe values with no run here
    to read: what was read before is said to be from before the stop, not the machine's
    state now; values read after a stop are not."""
    _latch(app_engine, (utcnow() + timedelta(seconds=1)).isoformat(timespec="seconds"))
    answer = DeviceValues.model_validate(test_client.get("/api/v1/devices/pump1/values").json())
    assert [(p.name, p.before_stop) for p in answer.points] == [
        ("speed", True), ("speed_setpoint", True), ("running", True),
    ]  # fmt: skip
    assert answer.points[0].shown() == "1195.5 (before its stop)"
    _latch(app_engine, "2026-01-01T00:00:00+00:00")  # a stop before the runs read them
    points = _points(test_client.get("/api/v1/devices/pump1/values").json())
    assert [p["before_stop"] for p in points.values()] == [False, False, False]


def test_a_serial_reply_is_shown_as_the_number_its_command_parses_to(test_client, app_engine):  # type: ignore[no-untyped-def]
    meter = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}
    _device(app_engine, "plant-1", "lab-c", "meter1", METER_POINTS)
    run_id = _finished_run(
        app_engine, meter, "serial.command", {"command": "measure_voltage"},
        {"command": "measure_voltage", "response": "12.5", "unit": "V"},
    )  # fmt: skip
    points = _points(test_client.get("/api/v1/devices/meter1/values").json())
    assert points["measure_voltage"] | {"at": None} == {
        "name": "measure_voltage", "kind": "command", "value": 12.5, "unit": "V", "at": None,
        "run_id": run_id, "task_id": points["measure_voltage"]["task_id"], "op": "serial.command",
        "read": True, "before_stop": False,
    }  # fmt: skip


def test_namesakes_need_site_and_agent_and_unknown_is_404(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    _device(app_engine, "plant-1", "skid-a", "pump1", PUMP_POINTS)
    _device(app_engine, "plant-2", "skid-b", "pump1", PUMP_POINTS)
    ambiguous = test_client.get("/api/v1/devices/pump1/values")
    assert ambiguous.status_code == 409
    assert "plant-1/skid-a" in ambiguous.text and "plant-2/skid-b" in ambiguous.text
    picked = test_client.get("/api/v1/devices/pump1/values", params={"site": "plant-2"})
    assert picked.status_code == 200 and picked.json()["agent"] == "skid-b"
    missing = test_client.get("/api/v1/devices/nope/values")
    assert missing.status_code == 404 and "nope" in missing.text


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ({"site": "plant-9"}, "device 'pump1' at site 'plant-9' does not exist"),
        ({"agent": "skid-z"}, "device 'pump1' of agent 'skid-z' does not exist"),
        (
            {"site": "plant-1", "agent": "skid-z"},
            "device 'pump1' of agent 'skid-z' at site 'plant-1' does not exist",
        ),
    ],
)
def test_a_device_not_where_it_was_looked_for_says_where(  # type: ignore[no-untyped-def]
    test_client, app_engine, where: dict[str, str], words: str
) -> None:
    """It said "device 'pump1' does not exist" of a device that exists, at another site."""
    _device(app_engine, "plant-1", "skid-a", "pump1", PUMP_POINTS)
    for method, path, body in [
        ("GET", "/api/v1/devices/pump1/values", None),
        ("POST", "/api/v1/devices/pump1/stop", {"reason": "leak"}),
        ("POST", "/api/v1/devices/pump1/resume", {"reason": "fixed"}),
    ]:
        answer = test_client.request(method, path, params=where, json=body)
        assert answer.status_code == 404, answer.text
        error = answer.json()["error"]
        assert error["message"] == words
        assert error["details"] == {"device": "pump1", **where}


def test_another_sites_device_is_404_for_a_scoped_caller(test_client, app_engine, pump) -> None:  # type: ignore[no-untyped-def]
    _device(app_engine, "plant-2", "skid-b", "valve9", [{"name": "open", "kind": "point"}])
    token = make_user_with_token(app_engine, "op-plant-2", "operator", "plant-2").token
    headers = {"Authorization": f"Bearer {token}"}
    refused = test_client.get("/api/v1/devices/pump1/values", headers=headers)
    assert refused.status_code == 404, refused.text
    own = test_client.get("/api/v1/devices/valve9/values", headers=headers)
    assert own.status_code == 200 and own.json()["site"] == "plant-2"


def test_sdk_and_cli_show_the_values(live_url: str, app_engine, pump) -> None:  # type: ignore[no-untyped-def]
    with tme.Client(live_url) as client:
        values = client.fleet.values("pump1")
        assert {p.name: p.value for p in values.points}["speed"] == 1195.5
        with pytest.raises(NotFound):
            client.fleet.values("pump1", site="plant-9")
    result = CliRunner().invoke(cli_app, ["device", "values", "pump1", "--url", live_url, "--json"])
    assert result.exit_code == 0, result.stderr
    shown = {p["name"]: p for p in json.loads(result.stdout)["points"]}
    assert shown["speed_setpoint"]["run_id"] == pump["written"]
    table = CliRunner().invoke(cli_app, ["device", "values", "pump1", "--url", live_url])
    assert table.exit_code == 0 and "1195.5" in table.stdout
    assert "not read back" not in table.stdout
    _device(app_engine, "plant-1", "skid-a", "pump2", STOPPABLE_POINTS)
    _finished_run(
        app_engine, PUMP | {"device": "pump2"}, "device.stop", {"reason": "leak"},
        {"stopped": "pump2", "written": {"run": False, "speed_setpoint": 0}, "read_back": {}},
    )  # fmt: skip
    table = CliRunner().invoke(cli_app, ["device", "values", "pump2", "--url", live_url])
    assert table.exit_code == 0, table.stderr
    assert table.stdout.count("(written,") == 2  # run and speed_setpoint (a cell wraps)
