"""The agent's checks before a command may run: envelope, devices, ops, expiry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tme.agents.checks import Refused, check_command, is_expired
from tme.agents.devices import Device, DeviceSet
from tme.agents.operations import values_match
from tme.drivers.profile import load_profile
from tme.protocol import Command, utcnow

PUMP = Path(__file__).parents[3] / "configs" / "profiles" / "pump.yaml"


class NoBus:
    """A Modbus bus the checks never touch."""

    bus_key = "none"

    async def read_points(self, *_args: object) -> dict:
        raise AssertionError("a check touched the bus")

    async def write_point(self, *_args: object) -> None:
        raise AssertionError("a check touched the bus")


def devices() -> DeviceSet:
    return DeviceSet({"pump1": Device("pump1", NoBus(), 1, load_profile(PUMP))})


def command(op: str, **fields: Any) -> Command:
    return Command(
        task_id=1,
        site="s",
        agent="a",
        op=op,
        timeout_s=5,
        not_after=utcnow() + timedelta(minutes=1),
        **fields,
    )


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"point": "speed_setpoint", "value": 3001}, "above the maximum"),
        ({"point": "speed_setpoint", "value": "fast"}, "needs a number"),
        ({"point": "actual_speed", "value": 10}, "read-only"),
        ({"point": "nope", "value": 1}, "unknown point"),
        ({"point": "run", "value": 1}, "true or false"),
        ({"value": 1}, "params.point"),
    ],
)
def test_out_of_envelope_writes_are_refused(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Refused, match=fragment):
        check_command(command("modbus.write", device="pump1", params=params), devices(), False)


def test_in_envelope_write_is_planned_with_the_checked_value() -> None:
    plan = check_command(
        command("modbus.write", device="pump1", params={"point": "speed_setpoint", "value": 1200}),
        devices(),
        False,
    )
    assert plan.device is not None and plan.value == 1200


def test_unknown_device_op_and_disabled_shell_are_refused() -> None:
    with pytest.raises(Refused, match="unknown device"):
        check_command(command("modbus.read", device="pump9"), devices(), False)
    with pytest.raises(Refused, match="unknown op"):
        check_command(command("format_disk"), devices(), True)
    with pytest.raises(Refused, match="disabled"):
        check_command(command("shell", cmd="true"), devices(), False)
    assert check_command(command("shell", cmd="true"), devices(), True).device is None


def test_expiry_and_verify_comparison() -> None:
    assert is_expired(command("noop").model_copy(update={"not_after": utcnow() - timedelta(1)}))
    assert not is_expired(command("noop"))
    speed = load_profile(PUMP).points["speed_setpoint"]
    assert values_match(1200, 1200, speed) and not values_match(1200, 1100, speed)
    assert not values_match(True, 1, speed)


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("modbus.write", {"point": ["speed_setpoint"], "value": 1}),
        ("modbus.write", {"point": {"name": "speed_setpoint"}, "value": 1}),
        ("modbus.read", {"point": ["speed_setpoint"]}),
        ("modbus.read", {"points": [["speed_setpoint"]]}),
        ("modbus.read", {"points": "speed_setpoint"}),
    ],
)
def test_a_point_that_is_not_a_name_is_refused(op: str, params: dict[str, Any]) -> None:
    with pytest.raises(Refused, match="point"):
        check_command(command(op, device="pump1", params=params), devices(), False)


@pytest.mark.parametrize("timeout", ['"inf"', '"nan"', '"-inf"', "0", "-5"])
def test_a_timeout_the_agent_cannot_enforce_is_refused(timeout: str) -> None:
    """The lax decoder takes "inf" and "nan" for a float."""
    body = command("noop").to_json().decode().replace('"timeout_s":5', f'"timeout_s":{timeout}')
    assert f'"timeout_s":{timeout}' in body
    decoded = Command.from_json(body)
    with pytest.raises(Refused, match="timeout_s"):
        check_command(decoded, devices(), False)


def test_a_serial_parameter_holding_the_links_line_end_is_rejected_before_it_runs() -> None:
    """The link's terminator (here ETX) inside a parameter is an envelope refusal at the
    agent's check, like a value out of range: the command is rejected, never started.
    The profile's pattern lets any text of one line through, so the link's check is the
    one that refuses it (free text without a pattern may not hold ETX at all)."""
    from tme.drivers.profile import parse_profile
    from tme.drivers.serial import SerialDriver

    label = {"request": "DISP:TEXT {0}", "args": [{"type": "str", "pattern": ".*"}]}
    profile = parse_profile({"name": "display", "commands": {"label": label}})
    driver = SerialDriver("loop://", terminator="\x03")  # built, never opened
    display = DeviceSet({"display": Device("display", driver, 1, profile)})
    injected = {"command": "label", "args": ["HI\x03SOUR:VOLT 29"]}
    with pytest.raises(Refused, match="line end"):
        check_command(command("serial.command", device="display", params=injected), display, False)
    plain = {"command": "label", "args": ["HI"]}
    plan = check_command(command("serial.command", device="display", params=plain), display, False)
    assert plan.args == ["HI"]


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("modbus.read", {"point": "speed_setpoint"}),
        ("modbus.write", {"point": "speed_setpoint", "value": 1200}),
    ],
)
def test_an_op_the_devices_driver_cannot_run_is_rejected(op: str, params: dict) -> None:
    """A Modbus op on a device behind a serial line driver (a profile may name points and
    commands) is refused at the check, not crashed on after `started`."""
    from tme.drivers.serial import SerialDriver

    line = DeviceSet({"pump1": Device("pump1", SerialDriver("loop://"), 1, load_profile(PUMP))})
    with pytest.raises(Refused, match=f"cannot run {op}"):
        check_command(command(op, device="pump1", params=params), line, False)
