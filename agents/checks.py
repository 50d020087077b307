"""What the agent checks before it accepts a command: nothing here touches a machine.

A refusal here becomes a `rejected` (or `expired`) event; no frame reaches the bus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tme.agents.devices import Device, DeviceSet
from tme.agents.expect import Expect, expect_of
from tme.errors import TMEError

if TYPE_CHECKING:  # for annotations; is_expired imports tme.protocol when it runs
    from tme.protocol import Command

BUILTIN_OPS = frozenset({"noop", "sleep", "shell"})
DEVICE_OPS = frozenset({"modbus.read", "modbus.write", "serial.command", "device.stop"})
# Stop the device: cancel its other commands at the agent, write its profile's safe values.
STOP_OP = "device.stop"
# Lift a stop's latch (the agent answers it at once, like a cancel; nothing is written).
RESUME_OP = "device.resume"
# Check another command without running it (a dry run): params.op and params.params are
# the command checked; the agent reads what its interlocks, step limit and min interval
# need, nothing more, and writes or sends nothing (nor counts a change).
CHECK_OP = "device.check"


class Refused(Exception):
    """The command may not run; `reason` goes into the rejected event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Plan:
    """A checked command: its device (for device ops), checked write value/arguments,
    and the effect a write must have (its params.expect)."""

    command: Command
    device: Device | None = None
    value: Any = None
    args: list[Any] | None = None
    expect: Expect | None = None


def is_expired(command: Command) -> bool:
    from tme.protocol import utcnow

    return utcnow() > command.not_after


def checked_command(check: Command) -> Command:
    """The command a device.check is about: the check's own, with its op and params
    (Refused when they do not name a device op)."""
    op, params = check.params.get("op"), check.params.get("params", {})
    if op not in DEVICE_OPS:
        ops = ", ".join(sorted(DEVICE_OPS))
        raise Refused(f"{CHECK_OP} checks a device op ({ops}) in params.op, got {op!r}")
    if not isinstance(params, dict):
        raise Refused(f"{CHECK_OP} needs params.params as a mapping (the checked op's params)")
    return check.model_copy(update={"op": op, "params": params})


def what_it_would_do(plan: Plan) -> str:
    """A checked plan's effect, in words (what a device.check answers)."""
    command, device = plan.command, plan.device
    assert device is not None
    if command.op == "modbus.write":
        point = str(command.params["point"])
        unit = device.profile.points[point].unit
        would = f"write {point} = {plan.value}{f' {unit}' if unit else ''} to {device.name}"
        if plan.expect is None:
            return would
        expect = plan.expect
        reads = expect.said(device.profile.points[expect.point].unit)
        return f"{would}, then wait up to {expect.within_s:g} s for {expect.point} to read {reads}"
    if command.op == STOP_OP:
        values = ", ".join(f"{p} = {v}" for p, v in safe_values(device).items())
        return f"stop {device.name}: write {values} (its safe values)"
    if command.op == "modbus.read":
        return f"read {', '.join(read_points_of(command, device))} from {device.name}"
    args = "".join(f" {a}" for a in plan.args or [])
    return f"send {command.params['command']}{args} to {device.name}"


def check_command(command: Command, devices: DeviceSet, allow_shell: bool) -> Plan:
    """Return the plan to run, or raise Refused naming the reason."""
    _check_timeout(command.timeout_s)
    if command.op in BUILTIN_OPS:
        if command.op == "shell" and not allow_shell:
            raise Refused("shell commands are disabled on this agent (allow_shell: false)")
        return Plan(command)
    if command.op not in DEVICE_OPS:
        raise Refused(f"unknown op {command.op!r}")
    device = devices.get(command.device)
    if device is None:
        raise Refused(f"unknown device {command.device!r} on agent {command.agent!r}")
    try:
        return _check_device_op(command, device)
    except TMEError as exc:
        raise Refused(exc.message) from exc


# What a device's driver must have for each op (PointReader, PointWriter, CommandRunner).
OP_METHODS = {
    "modbus.read": "read_points",
    "modbus.write": "write_point",
    "serial.command": "run_command",
    STOP_OP: "write_point",
}


def _check_device_op(command: Command, device: Device) -> Plan:
    if not callable(getattr(device.driver, OP_METHODS[command.op], None)):
        raise Refused(
            f"device {device.name!r} (bus {device.driver.bus_key}) cannot run {command.op}"
        )
    params = command.params
    profile = device.profile
    if command.op == "modbus.read":
        for point in read_points_of(command, device):
            profile.point(point)
        return Plan(command, device)
    if command.op == STOP_OP:
        if not safe_values(device):
            raise Refused(
                f"device {device.name!r} has no point with a safe_value in its profile"
                f" {profile.name!r}: a stop would have nothing to write"
            )
        return Plan(command, device)
    if command.op == "modbus.write":
        if "point" not in params or "value" not in params:
            raise Refused("modbus.write needs params.point and params.value")
        value = profile.check_write(_point_name(params["point"], "modbus.write"), params["value"])
        expect = params.get("expect")
        if expect is None:
            return Plan(command, device, value=value)
        return Plan(
            command, device, value=value, expect=expect_of(expect, device, value, command.timeout_s)
        )
    name = params.get("command")
    if not isinstance(name, str):
        raise Refused("serial.command needs params.command")
    args = params.get("args", [])
    if not isinstance(args, list):
        raise Refused("serial.command params.args must be a list")
    checked = profile.check_command(name, args)
    check_request = getattr(device.driver, "check_request", None)
    if check_request is not None:  # what the link carries as one line: its own line end
        check_request(profile, name, checked)
    return Plan(command, device, args=checked)


def changes_device(plan: Plan) -> str | None:
    """What the planned command would change on its device, in words; None when it
    only reads (a Modbus read, a serial command its profile says is read-only)."""
    command, device = plan.command, plan.device
    if device is None:
        return None
    if command.op == "modbus.write":
        return f"its write of {command.params.get('point')!r}"
    if command.op == STOP_OP:
        return "its stop (writing its safe values)"
    if command.op == "serial.command":
        name = command.params.get("command")
        spec = device.profile.commands.get(name) if isinstance(name, str) else None
        if spec is None or spec.access != "r":
            return f"its serial command {name!r}"
    return None


def safe_values(device: Device) -> dict[str, float | int | bool]:
    """What a stop writes: each point's safe value as the device receives it, in the
    profile's order (a pump's `run: false` before its speed)."""
    return {
        name: device.profile.check_write(name, spec.safe_value)
        for name, spec in device.profile.points.items()
        if spec.safe_value is not None and spec.access == "rw"
    }


def read_points_of(command: Command, device: Device) -> list[str]:
    """params.points, or params.point, or every point of the profile (Refused when
    what names the points is not a name or a list of names)."""
    params = command.params
    points = params.get("points")
    if points is not None:
        if not isinstance(points, list):
            raise Refused("modbus.read params.points must be a list of point names")
        return [_point_name(p, "modbus.read") for p in points]
    if params.get("point") is not None:
        return [_point_name(params["point"], "modbus.read")]
    return list(device.profile.points)


def _point_name(point: Any, op: str) -> str:
    """A point name as the command gave it; anything but text is refused (a list or an
    object would otherwise reach the profile's lookups and crash the check)."""
    if not isinstance(point, str):
        raise Refused(f"{op} point names must be text, got {type(point).__name__} {point!r}")
    return point


def _check_timeout(timeout_s: Any) -> None:
    """A timeout the agent can enforce: a finite number of seconds above zero (the lax
    decoder takes "inf" and "nan", which would let an operation run unbounded)."""
    finite = isinstance(timeout_s, int | float) and not isinstance(timeout_s, bool)
    if not finite or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise Refused(f"timeout_s must be a finite number of seconds above 0, got {timeout_s!r}")
