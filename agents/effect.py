"""Whether a write had its physical effect (a modbus.write's params.expect).

The write is done under the bus lock; then the agent reads the feedback point (pump 1's
`actual_speed` after its `speed_setpoint`) every POLL_S until it is within tolerance of
the expected value or `within_s` has passed. The bus lock is taken for each read only:
between reads the other devices on the same line or TCP connection are served, for the
seconds a machine takes to settle. A stop of the device cancels the wait at once (it
waits on a sleep or for the bus, never inside a write).

A read that fails with an error worth another try (no answer, a lost connection, a busy
device) does not end the wait: a drive that is starting draws current and a noisy line
drops a reply now and then, and the write went out either way. The next poll reads
again; the run fails only when `within_s` passes without the value, saying the last
error and the last value read. A read the device refuses (a Modbus exception saying
the request is wrong) ends the wait at once: repeating it cannot help.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from tme.agents.devices import Device
from tme.agents.expect import Expect
from tme.agents.operations import FLOAT32_EPSILON, LogLine, values_match
from tme.errors import DriverError

if TYPE_CHECKING:
    from tme.drivers.profile import PointSpec

# A drive's speed or a valve's position settles over seconds: five reads a second see
# it settled within 0.2 s of it, and leave the bus free nearly all the time.
POLL_S = 0.2


def effect_reached(expect: Expect, read: Any, spec: PointSpec) -> bool:
    """Whether the value read is the expected one: a bool exactly; a number within the
    tolerance, or with none as `verify` compares (what the registers hold of it, a
    float32 within its own precision)."""
    if expect.tolerance == 0 or isinstance(read, bool) or isinstance(expect.value, bool):
        return values_match(expect.value, read, spec)
    if not isinstance(read, int | float):
        return False
    slack = FLOAT32_EPSILON * abs(expect.value) if spec.type == "float32" else 0.0
    return math.fabs(read - expect.value) <= expect.tolerance + slack


async def wait_for_effect(
    device: Device,
    expect: Expect,
    bus: AbstractAsyncContextManager[Any],
    log: LogLine,
    poll_s: float = POLL_S,
) -> dict[str, Any]:
    """Read `expect.point` (taking `bus` for each read) until it reaches the expected
    value; the effect reached, or DriverError saying what was read last, and when. The
    write went out, so no failure here says `not_sent`."""
    spec = device.profile.points[expect.point]
    loop = asyncio.get_running_loop()
    began = loop.time()
    ends = began + expect.within_s
    log(f"waiting up to {expect.within_s:g} s for {expect.point} to read {_said(expect, spec)}")
    last: dict[str, Any] | None = None  # the effect as the last good read saw it
    failed: list[DriverError] = []  # the reads that failed since the last good one
    while True:
        try:
            value = await _read(device, expect.point, bus)
        except DriverError as exc:
            if not exc.retryable:
                raise _not_confirmed(expect.point, exc, [], spec) from exc
            if not failed:
                log(f"reading {expect.point} failed: {exc.message}; reading it again")
            failed.append(exc)
        else:
            if failed:
                log(f"reading {expect.point} answers again after {len(failed)} failed")
            failed = []
            last = _effect(expect, value, spec, loop.time() - began)
            if effect_reached(expect, value, spec):
                log(f"{expect.point} reads {_value_said(value, spec)} after {last['after_s']} s")
                return {**last, "reached": True}
        if loop.time() >= ends:
            if failed:
                raise _not_confirmed(expect.point, failed[-1], failed, spec, last)
            assert last is not None
            raise DriverError(
                f"effect not reached: {expect.point} read {_value_said(last['value'], spec)}"
                f" after {last['after_s']:.1f} s, expected {_said(expect, spec)}",
                result={"effect": {**last, "reached": False}},
            )
        await asyncio.sleep(min(poll_s, ends - loop.time()))


async def _read(device: Device, point: str, bus: AbstractAsyncContextManager[Any]) -> Any:
    async with bus:
        read = await device.driver.read_points(device.profile, device.unit, [point])
    return read.get(point)


def _not_confirmed(
    point: str,
    exc: DriverError,
    failed: list[DriverError],
    spec: PointSpec,
    last: dict[str, Any] | None = None,
) -> DriverError:
    """The wait ended on reads that failed: how many (when more than one), the last
    error, and the last value read before them (in the result, as `effect`)."""
    times = f" {len(failed)} times" if len(failed) > 1 else ""
    message = (
        f"effect not confirmed: the write was sent, but reading {point} for its effect"
        f" failed{times}: {exc.message}"
    )
    if last is not None:
        read = _value_said(last["value"], spec)
        message += f"; it last read {read} after {last['after_s']:.1f} s"
    return DriverError(
        message,
        modbus_exception=exc.modbus_exception,
        retryable=exc.retryable,
        result={"effect": {**last, "reached": False}} if last is not None else None,
    )


def _effect(expect: Expect, value: Any, spec: PointSpec, after_s: float) -> dict[str, Any]:
    return {
        "point": expect.point,
        "value": value,
        "expected": expect.value,
        "tolerance": expect.tolerance,
        "unit": spec.unit,
        "after_s": round(after_s, 2),
    }


def _said(expect: Expect, spec: PointSpec) -> str:
    return expect.said(spec.unit)


def _value_said(value: Any, spec: PointSpec) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value}{f' {spec.unit}' if spec.unit else ''}"
