"""Running one checked command against its driver (or a builtin op) and shaping its result.

The caller holds the bus lock and enforces the timeout; this module only says what
to do on the machine. `log` reports a line to the controller (held briefly by the
executor, so it rides on the command's next event).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tme.agents.checks import STOP_OP, Plan, read_points_of, safe_values
from tme.agents.devices import Device
from tme.errors import DriverError

if TYPE_CHECKING:
    from tme.drivers.profile import PointSpec

LogLine = Callable[[str], None]
# Says how a running command is going, at once (the executor sends it as a `progress`
# event; the controller keeps it as the run's result until the final one).
Progress = Callable[[dict[str, Any]], None]
FLOAT32_EPSILON = 2.0**-23  # float32's relative precision: a read-back may differ by one ulp


async def run_plan(
    plan: Plan, log: LogLine, *, allow_shell: bool, progress: Progress | None = None
) -> dict[str, Any]:
    command = plan.command
    if plan.device is None:
        return await _run_builtin(plan, allow_shell)
    if command.op == "modbus.read":
        return await read_values(plan.device, read_points_of(command, plan.device), log)
    if command.op == "modbus.write":
        return await _write(plan, plan.device, log)
    if command.op == STOP_OP:
        return await _stop(plan.device, log, progress or _no_progress)
    return await _serial(plan, plan.device, log)


async def _run_builtin(plan: Plan, allow_shell: bool) -> dict[str, Any]:
    from tme.drivers.builtin import run_builtin

    command = plan.command
    return await run_builtin(
        command.op,
        command.params,
        command.cmd,
        allow_shell=allow_shell,
        timeout_s=command.timeout_s,
    )


async def read_values(device: Device, points: list[str], log: LogLine) -> dict[str, Any]:
    """Read points; the result gives each value with its unit."""
    log(f"reading {', '.join(points)} from {device.name}")
    values = await device.driver.read_points(device.profile, device.unit, points)
    return {
        "values": {
            name: {"value": value, "unit": device.profile.points[name].unit}
            for name, value in values.items()
        }
    }


async def _write(plan: Plan, device: Device, log: LogLine) -> dict[str, Any]:
    point = str(plan.command.params["point"])
    log(f"writing {point} = {plan.value} on {device.name}")
    await device.driver.write_point(device.profile, device.unit, point, plan.value)
    result: dict[str, Any] = {
        "point": point,
        "written": plan.value,
        "unit": device.profile.points[point].unit,
    }
    if plan.command.params.get("verify"):
        try:
            read = await device.driver.read_points(device.profile, device.unit, [point])
        except DriverError as exc:
            exc.not_sent = False  # the write went out: the command touched the machine
            raise
        back = read.get(point)
        if not values_match(plan.value, back, device.profile.points[point]):
            raise DriverError(f"verify failed: wrote {plan.value} to {point}, read back {back}")
        log(f"verified {point} = {back}")
        result["read_back"] = back
    return result


async def _stop(device: Device, log: LogLine, progress: Progress) -> dict[str, Any]:
    """Write every safe value, each tried even when one before it failed: a pump whose
    speed could not be zeroed must still have been told to stop. The result names what
    was written and what the device then read back (the device's values after the stop
    are those); any write failure fails the run, naming each point and its error.

    `first_pass` (in the result, and in a progress event at once when the stop then
    holds the values) says what the first writes did, when, and for how long the stop
    holds them before writing them again: whoever stopped the device learns it is safe
    without waiting for that hold (the device's whole answer time)."""
    loop = asyncio.get_running_loop()
    written, failed = await _write_safe_values(device, log)
    # A write the stop cut off mid-request may still land after these: the safe values
    # are written again once it no longer can (the stop holds the bus meanwhile).
    wait_s = max(device.cut_off_until - loop.time(), 0.0)
    first_pass = _first_pass(written, failed, wait_s)
    if wait_s > 0:
        log(f"stop: a write cut off by it may land within {wait_s:.1f} s; writing again then")
        progress({"first_pass": first_pass})
        await asyncio.sleep(wait_s)
        written, failed = await _write_safe_values(device, log)
    if failed:
        problems = "; ".join(f"{point}: {exc.message}" for point, exc in failed.items())
        done = ", ".join(f"{p} = {v}" for p, v in written.items()) or "nothing"
        raise DriverError(
            f"stop of {device.name} incomplete: wrote {done}; not written: {problems}",
            retryable=any(exc.retryable for exc in failed.values()),
            not_sent=not written and all(exc.not_sent for exc in failed.values()),
            result={"first_pass": first_pass},
        )
    read_back = await _read_back(device, written, log)
    return {"stopped": device.name, "written": written, **read_back, "first_pass": first_pass}


def _first_pass(
    written: dict[str, Any], failed: dict[str, DriverError], hold_s: float
) -> dict[str, Any]:
    """What a stop's first writes did: `at` (UTC, when they ended), `written`,
    `not_written` (each point's error) and `hold_s` (how long until it writes them again;
    0: it does not, no write it cut off can land)."""
    return {
        "at": datetime.now(UTC).isoformat(),
        "written": dict(written),
        "not_written": {point: exc.message for point, exc in failed.items()},
        "hold_s": round(hold_s, 3),
    }


def _no_progress(_: dict[str, Any]) -> None:
    """A stop run without anyone to tell of its progress (a check's, a test's)."""


async def _read_back(device: Device, written: dict[str, Any], log: LogLine) -> dict[str, Any]:
    """`read_back`: each written point as the device now reads (none when its driver
    cannot read); a read that fails is said as `read_back_error` and fails no stop: the
    safe values went out, only what the points now hold is not known."""
    if not callable(getattr(device.driver, "read_points", None)):
        return {"read_back": {}}
    try:
        read = await device.driver.read_points(device.profile, device.unit, list(written))
    except DriverError as exc:
        log(f"stop: could not read back what it wrote on {device.name}: {exc.message}")
        return {"read_back": {}, "read_back_error": exc.message}
    for point, value in read.items():
        if not values_match(written[point], value, device.profile.points[point]):
            log(f"stop: {point} reads {value} on {device.name}, not its safe value")
    return {"read_back": read}


async def _write_safe_values(
    device: Device, log: LogLine
) -> tuple[dict[str, Any], dict[str, DriverError]]:
    written: dict[str, Any] = {}
    failed: dict[str, DriverError] = {}
    for point, value in safe_values(device).items():
        try:
            await device.driver.write_point(device.profile, device.unit, point, value)
        except DriverError as exc:
            failed[point] = exc
            log(f"stop: could not write {point} = {value} on {device.name}: {exc.message}")
            continue
        written[point] = value
        log(f"stop: wrote {point} = {value} on {device.name} (its safe value)")
    return written, failed


def values_match(written: Any, read: Any, spec: PointSpec) -> bool:
    """Whether the read-back is what the registers hold after writing `written`.

    The expected value is decode(encode(written)): integer registers compare exactly
    (1,000,000 is not 999,999), a float32 within its own precision (250.0 is not 250.4).
    """
    if spec.type == "bool" or isinstance(written, bool) or isinstance(read, bool):
        return type(written) is bool and type(read) is bool and written == read
    if not isinstance(written, int | float) or not isinstance(read, int | float):
        return False
    from tme.drivers.codec import wire_value  # pymodbus's codec: only agents with Modbus load it

    expected = wire_value(spec, written)
    if spec.type == "float32":
        return math.isclose(expected, read, rel_tol=FLOAT32_EPSILON, abs_tol=0.0)
    return expected == read


async def _serial(plan: Plan, device: Device, log: LogLine) -> dict[str, Any]:
    name = str(plan.command.params["command"])
    log(f"sending {name} to {device.name}")
    response = await device.driver.run_command(device.profile, name, plan.args or [])
    spec = device.profile.commands.get(name)
    return {"command": name, "response": response, "unit": spec.unit if spec else ""}
