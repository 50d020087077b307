"""What the agent checks before it accepts a command: nothing here touches a machine.

A refusal here becomes a `rejected` (or `expired`) event; no frame reaches the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tme.agents.devices import Device, DeviceSet
from tme.errors import TMEError

if TYPE_CHECKING:  # for annotations; is_expired imports tme.protocol when it runs
    from tme.protocol import Command

BUILTIN_OPS = frozenset({"noop", "sleep", "shell"})
DEVICE_OPS = frozenset({"modbus.read", "modbus.write", "serial.command"})


class Refused(Exception):
    """The command may not run; `reason` goes into the rejected event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Plan:
    """A checked command: its device (for device ops) and checked write value/arguments."""

    command: Command
    device: Device | None = None
    value: Any = None
    args: list[Any] | None = None


def is_expired(command: Command) -> bool:
    from tme.protocol import utcnow

    return utcnow() > command.not_after


def check_command(command: Command, devices: DeviceSet, allow_shell: bool) -> Plan:
    """Return the plan to run, or raise Refused naming the reason."""
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


def _check_device_op(command: Command, device: Device) -> Plan:
    params = command.params
    profile = device.profile
    if command.op == "modbus.read":
        for point in read_points_of(command, device):
            profile.point(point)
        return Plan(command, device)
    if command.op == "modbus.write":
        if "point" not in params or "value" not in params:
            raise Refused("modbus.write needs params.point and params.value")
        value = profile.check_write(params["point"], params["value"])
        return Plan(command, device, value=value)
    name = params.get("command")
    if not isinstance(name, str):
        raise Refused("serial.command needs params.command")
    args = params.get("args", [])
    if not isinstance(args, list):
        raise Refused("serial.command params.args must be a list")
    return Plan(command, device, args=profile.check_command(name, args))


def read_points_of(command: Command, device: Device) -> list[str]:
    """params.points, or params.point, or every point of the profile."""
    params = command.params
    if isinstance(params.get("points"), list):
        return [str(p) for p in params["points"]]
    if "point" in params:
        return [str(params["point"])]
    return list(device.profile.points)
