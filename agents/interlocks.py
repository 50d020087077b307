"""Interlocks, step limits and min intervals: what the agent reads from the machine just
before a change.

An interlock (the agent config's `interlocks` of a device) allows a change only while a
point, of the device itself or of another device of the agent, is below, above or equal
to a limit: "pump1's speed only while tank1's level is below 95". A point's `max_step`
(its profile) allows a write only within that distance of the value the device holds.
A point's `min_interval_s` (its profile) allows a write that changes what the device
holds only that long after the agent last changed it (tme.agents.pacing); a write of
the value it holds is no change. All are read under the bus locks of every device
involved, taken with the command's own bus lock before it starts, so nothing else on
those buses runs between the reading and the write. A change that fails one is rejected
(never retried automatically: the write it carried would land later, when nobody asked
for it), and nothing is written.

Writing the point's `safe_value` is never refused by any: stopping a pump must not wait
for the tank it would overfill, nor for its drive's restart delay. min/max, read-only
and lockout still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from tme.agents.agent_config import DeviceConfig, InterlockConfig
from tme.agents.checks import STOP_OP, Plan, changes_device
from tme.agents.pacing import PointChanges, paced_spec
from tme.errors import ConfigError, EnvelopeViolation
from tme.names import did_you_mean

if TYPE_CHECKING:
    from tme.agents.devices import Device

LogLine = Callable[[str], None]


@dataclass(frozen=True)
class Interlock:
    source: Device  # whose point is read
    point: str
    condition: str  # below, above or equals
    limit: float | bool
    why: str = ""
    guards_point: str | None = None  # a write of this point (None: see guards_command)
    guards_command: str | None = None  # a run of this serial command (both None: any change)

    def applies_to(self, plan: Plan) -> bool:
        if plan.command.op == STOP_OP:
            return False  # a stop writes safe values only
        params = plan.command.params
        if self.guards_point is not None:
            return plan.command.op == "modbus.write" and params.get("point") == self.guards_point
        if self.guards_command is not None:
            return (
                plan.command.op == "serial.command" and params.get("command") == self.guards_command
            )
        return changes_device(plan) is not None

    def holds(self, value: Any) -> bool:
        """Whether `value`, read from the source point, lets the change through; a value
        that is not what the condition compares (text, no value) never does."""
        if isinstance(self.limit, bool) or isinstance(value, bool):
            return type(value) is type(self.limit) and value == self.limit
        if not isinstance(value, int | float):
            return False
        if self.condition == "below":
            return value < self.limit
        if self.condition == "above":
            return value > self.limit
        return value == self.limit

    @property
    def limit_text(self) -> str:
        """ "95", "false" """
        return str(self.limit).lower() if isinstance(self.limit, bool) else f"{self.limit:g}"

    def text(self) -> str:
        """ "tank1.level below 95" """
        return f"{self.source.name}.{self.point} {self.condition} {self.limit_text}"

    def public(self) -> dict[str, Any]:
        """As presence tells it, under the point or command it guards."""
        return {
            "device": self.source.name,
            "point": self.point,
            self.condition: self.limit,
            "why": self.why,
        }


def resolve(devices: dict[str, Device], configs: dict[str, DeviceConfig]) -> None:
    """Give each device its interlocks, every name checked against the profiles; the
    error names the config key (devices.pump1.interlocks.0.requires.device)."""
    for name, config in configs.items():
        devices[name].interlocks = [
            _resolve(devices, devices[name], item, f"devices.{name}.interlocks.{i}")
            for i, item in enumerate(config.interlocks)
        ]


def _resolve(
    devices: dict[str, Device], guarded: Device, config: InterlockConfig, key: str
) -> Interlock:
    profile = guarded.profile
    if config.point is not None:
        spec = profile.points.get(config.point)
        if spec is None:
            writable = [name for name, point in profile.points.items() if point.access == "rw"]
            what = f"a point of profile {profile.name!r}"
            _unknown(f"{key}.point", config.point, what, writable)
        elif spec.access != "rw":
            _refuse(f"{key}.point", f"{config.point!r} is read-only: nothing writes it to guard")
    if config.command is not None:
        command = profile.commands.get(config.command)
        if command is None:
            what = f"a command of profile {profile.name!r}"
            _unknown(f"{key}.command", config.command, what, profile.commands)
        elif command.access == "r":
            _refuse(f"{key}.command", f"{config.command!r} only reads: it changes nothing to guard")
    source_name = config.requires_device or guarded.name
    source = devices.get(source_name)
    if source is None:
        _unknown(f"{key}.requires.device", source_name, "a device of this agent", devices)
    _check_source(source, config, f"{key}.requires")
    return Interlock(
        source=source,
        point=config.requires_point,
        condition=config.condition,
        limit=config.limit,
        why=config.why,
        guards_point=config.point,
        guards_command=config.command,
    )


def _check_source(source: Device, config: InterlockConfig, key: str) -> None:
    spec = source.profile.points.get(config.requires_point)
    if spec is None:
        what = f"a point of device {source.name!r} (profile {source.profile.name!r})"
        _unknown(f"{key}.point", config.requires_point, what, source.profile.points)
    if not callable(getattr(source.driver, "read_points", None)):
        _refuse(f"{key}.device", f"device {source.name!r} has no points to read (its driver)")
    is_bool = spec.type == "bool"
    if config.condition != "equals" and is_bool:
        what = f"{source.name}.{config.requires_point} is true or false: use equals"
        _refuse(f"{key}.{config.condition}", what)
    if config.condition == "equals" and isinstance(config.limit, bool) != is_bool:
        wanted = "true or false" if is_bool else "a number"
        what = f"{source.name}.{config.requires_point} is a {spec.type}: give {wanted}"
        _refuse(f"{key}.equals", what)


def _unknown(key: str, name: str, what: str, known: Iterable[str]) -> NoReturn:
    raise ConfigError(f"{key}: {name!r} is not {what}" + did_you_mean(name, sorted(known)), key=key)


def _refuse(key: str, message: str) -> NoReturn:
    raise ConfigError(f"{key}: {message}", key=key)


def needs_reading(plan: Plan) -> bool:
    """Whether the plan's change must read its device (or others) before it starts."""
    device = plan.device
    if device is None:
        return False
    if any(interlock.applies_to(plan) for interlock in device.interlocks):
        return True
    return _step_spec(plan) is not None or paced_spec(plan) is not None


def buses_of(plan: Plan) -> set[str]:
    """The buses the plan uses: its device's, and those its interlocks read."""
    device = plan.device
    if device is None:
        return set()
    buses = {str(device.driver.bus_key)}
    buses |= {
        str(interlock.source.driver.bus_key)
        for interlock in device.interlocks
        if interlock.applies_to(plan)
    }
    return buses


async def check_before_change(plan: Plan, log: LogLine, changes: PointChanges) -> frozenset[str]:
    """Read what the plan's interlocks, step limit and min interval need and raise
    EnvelopeViolation when the change may not be made now; return the points found
    holding what the plan writes already (no change, for its min interval). A read that
    fails raises its DriverError."""
    device = plan.device
    assert device is not None  # needs_reading said so
    if _writes_safe_value(plan):
        log(f"{plan.command.params['point']} = {plan.value} is its safe value: always allowed")
        return frozenset()
    interlocks = [i for i in device.interlocks if i.applies_to(plan)]
    step, paced = _step_spec(plan), paced_spec(plan)
    wanted: dict[str, tuple[Device, list[str]]] = {}
    for interlock in interlocks:
        _want(wanted, interlock.source, interlock.point)
    if step is not None or paced is not None:
        _want(wanted, device, str(plan.command.params["point"]))
    values: dict[tuple[str, str], Any] = {}
    for source, points in wanted.values():
        read = await source.driver.read_points(source.profile, source.unit, points)
        values.update({(source.name, point): value for point, value in read.items()})
    for interlock in interlocks:
        value = values.get((interlock.source.name, interlock.point))
        if not interlock.holds(value):
            raise _interlock_refusal(plan, interlock, value)
        log(f"interlock {interlock.text()}: {value} (holds)")
    point = str(plan.command.params.get("point"))
    if step is not None:
        from tme.drivers.envelope import check_step

        check_step(step, point, plan.value, values.get((device.name, point)))
    if paced is not None:
        return _check_interval(plan, paced, values.get((device.name, point)), changes, log)
    return frozenset()


def _check_interval(
    plan: Plan, spec: Any, present: Any, changes: PointChanges, log: LogLine
) -> frozenset[str]:
    """A write of the value the point holds is no change; any other must come at least
    its min_interval_s after the agent last changed the point."""
    from tme.agents.operations import values_match
    from tme.drivers.envelope import check_interval

    device = plan.device
    assert device is not None
    point = str(plan.command.params["point"])
    if values_match(plan.value, present, spec):
        log(f"{point} holds {present} already: no change, whatever its min_interval_s")
        return frozenset([point])
    since = changes.since_s(device.name, point)
    check_interval(spec, point, since)
    if since is not None:
        log(f"{point} last changed {since:.1f} s ago (min_interval_s {spec.min_interval_s:g})")
    return frozenset()


def _want(wanted: dict[str, tuple[Device, list[str]]], source: Device, point: str) -> None:
    points = wanted.setdefault(source.name, (source, []))[1]
    if point not in points:
        points.append(point)


def _step_spec(plan: Plan) -> Any:
    """The written point's spec when it has a max_step (None otherwise)."""
    if plan.device is None or plan.command.op != "modbus.write":
        return None
    spec = plan.device.profile.points.get(str(plan.command.params.get("point")))
    return spec if spec is not None and spec.max_step is not None else None


def _writes_safe_value(plan: Plan) -> bool:
    if plan.device is None or plan.command.op != "modbus.write":
        return False
    point = str(plan.command.params.get("point"))
    spec = plan.device.profile.points.get(point)
    if spec is None or spec.safe_value is None:
        return False
    safe = plan.device.profile.check_write(point, spec.safe_value)  # as the device gets it
    return type(safe) is type(plan.value) and safe == plan.value


def _interlock_refusal(plan: Plan, interlock: Interlock, value: Any) -> EnvelopeViolation:
    what = changes_device(plan) or "this change"
    unit = interlock.source.profile.points[interlock.point].unit
    shown = "no value" if value is None else f"{value}{' ' + unit if unit else ''}"
    why = f": {interlock.why}" if interlock.why else ""
    return EnvelopeViolation(
        f"interlock: {interlock.source.name}.{interlock.point} is {shown}, and {what} needs"
        f" it {interlock.condition} {interlock.limit_text}{why}",
        details={
            "reason": "interlock",
            "device": interlock.source.name,
            "point": interlock.point,
            "value": value,
            interlock.condition: interlock.limit,
            "why": interlock.why,
        },
    )
