"""How long a command's operation may take, and how a driver's failure is said.

The limit is the command's timeout or its run's deadline, whichever comes first; the
reasons are the words a failed run shows the operator.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tme.agents.checks import Plan
    from tme.errors import DriverError
    from tme.protocol import Command


def not_opened_reason(plan: Plan, limit: TimeLimit) -> str:
    bus = plan.device.driver.bus_key if plan.device is not None else "the device"
    return (
        f"cannot connect to {bus}: the connection could not be opened {limit.said};"
        " nothing was sent to the device"
    )


@dataclass(frozen=True)
class TimeLimit:
    """When a command's operation is cut off (loop time) and how that is said."""

    at: float
    said: str  # "within 10 s (the command's timeout)" or "by the run's deadline (...)"
    result_said: str  # as a timed-out result says it: "within 10.0 s", or the deadline


def after_hold(limit: TimeLimit, hold_until: float, timeout_s: float) -> TimeLimit:
    """A stop's limit when it must hold the safe values until `hold_until` (loop time: a
    write it cut off may land until then) and write them again: its timeout counts from
    the end of the hold, so a device answering slower than a stop's timeout is still
    written safe after the last write that could land."""
    at = hold_until + timeout_s
    if at <= limit.at:
        return limit
    said = f"within {timeout_s:g} s of the end of its hold (the command's timeout)"
    return TimeLimit(at, said, said)


def time_limit(command: Command) -> TimeLimit:
    """From now: the command's timeout, or its run's total deadline when that comes
    first (the controller times the run out there; the operation must not go on)."""
    now = asyncio.get_running_loop().time()
    if command.deadline is not None:
        from tme.protocol import utcnow

        left = (command.deadline - utcnow()).total_seconds()
        if left < command.timeout_s:
            said = f"by the run's deadline ({command.deadline.isoformat(timespec='seconds')})"
            return TimeLimit(now + max(left, 0.0), said, said)
    return TimeLimit(
        now + command.timeout_s,
        f"within {command.timeout_s:g} s (the command's timeout)",
        f"within {command.timeout_s} s",
    )


def driver_reason(exc: DriverError) -> str:
    if exc.modbus_exception is not None and "exception" not in exc.message.lower():
        return f"{exc.message} (Modbus exception {exc.modbus_exception})"
    if exc.not_sent:
        return f"{exc.message}; nothing was sent to the device"
    return exc.message


def driver_details(exc: DriverError) -> dict[str, Any] | None:
    if exc.modbus_exception is None:
        return exc.result  # what the operation got before it failed (a shell's output)
    return {"modbus_exception": exc.modbus_exception, "retryable": exc.retryable}
