"""What a driver is, split by capability.

A driver owns one connection to one physical bus (a TCP connection, a serial
port) and speaks to one or more devices on it. The agent holds one lock per
`bus_key`, so two operations never interleave on the same wire, and checks
every write against the device profile before it calls `write`.

Drivers are asyncio: blocking libraries (pyserial) run in a worker thread.
Every failure leaves a driver as `tme.errors.DriverError`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Protocol, runtime_checkable

from tme.drivers.profile import DeviceProfile
from tme.errors import ConfigError

Value = float | int | bool | str


def require_setting(name: str, value: Any, *, low: float, whole: bool = False) -> None:
    """Refuse a connection setting below `low` (or not finite, or not whole) at build time."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < low or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"connection setting {name} must be {kind} >= {low}, got {value!r}", key=name
        )


def serial_bus_key(port: str) -> str:
    """The bus identity of a serial port: one device node, however its path is spelled.

    /dev/serial/by-id/usb-FTDI-... and /dev/ttyUSB0 are one wire; two drivers on it
    would interleave frames and steal each other's replies. A URL (socket://...) is
    kept as it is.
    """
    if "://" in port:
        return f"serial:{port}"
    return f"serial:{os.path.realpath(port)}"  # follows links; reads no device


@runtime_checkable
class Driver(Protocol):
    """The part every driver has: a bus identity and an explicit start and stop."""

    bus_key: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class AnswersWithin(Protocol):
    """A driver that waits up to `request_timeout_s` for a device's answer.

    A request is on its way to the device before its answer is: if the process that
    sent it dies, the device may still act on it (a write lands) and answer, up to that
    long after. A restarted agent keeps such a bus quiet that long before it sends
    anything, so that the dead process's frame cannot land between a new command's
    frames.
    """

    request_timeout_s: float


@runtime_checkable
class CountsRequests(Protocol):
    """A driver that counts the requests it handed on towards the wire (`requests_sent`).

    A command cut off by its timeout while the count of its driver stayed as it was
    sent nothing (its connection could not be opened in time): it never touched the
    machine, and is reported not started, so the controller may retry it, a write too.
    """

    requests_sent: int


@runtime_checkable
class PointReader(Protocol):
    async def read_points(
        self, profile: DeviceProfile, unit: int, points: list[str]
    ) -> dict[str, Value]: ...


@runtime_checkable
class PointWriter(Protocol):
    async def write_point(
        self, profile: DeviceProfile, unit: int, point: str, value: Value
    ) -> None: ...


@runtime_checkable
class CommandRunner(Protocol):
    async def run_command(self, profile: DeviceProfile, command: str, args: list[Any]) -> str: ...
