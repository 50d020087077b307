"""The agent's devices: each one a driver, a unit id and a profile, plus one lock per bus.

Two devices on one RS-485 line (or behind one Modbus/TCP gateway) share a bus_key,
so they share a lock: operations never interleave on one wire, whatever their unit.
Commands waiting for a bus go by priority, higher first, then in the order they came
(tme.agents.priority_lock).

A bus on which the last process was cut off mid-operation (killed, power cut) starts
quiet: its lock is held, and its driver started, only once the cut-off request can no
longer reach the device (see `quiet_after_cut_off`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from tme.agents.agent_config import DeviceConfig
from tme.agents.priority_lock import PriorityLock
from tme.errors import ConfigError, TMEError

if TYPE_CHECKING:
    from tme.agents.checks import Plan
    from tme.agents.interlocks import Interlock
    from tme.agents.lockout import Lockouts
    from tme.drivers.profile import DeviceProfile
    from tme.protocol import Command

log = logging.getLogger(__name__)

MAX_LINK_ERROR = 300  # characters of the error a down link keeps


@dataclass
class Device:
    name: str
    driver: Any  # a tme.drivers.base.Driver with some of PointReader/PointWriter/CommandRunner
    unit: int
    profile: DeviceProfile
    # changes allowed only while another point reads right (tme.agents.interlocks)
    interlocks: list[Interlock] = field(default_factory=list)
    # loop time until which a write cut off mid-request may still land (a stop writes
    # its safe values again after it)
    cut_off_until: float = 0.0
    # stopped by its agent after this long without the link (tme.agents.link_watch)
    stop_on_link_loss_s: float | None = None

    @cached_property
    def _described(self) -> dict[str, Any]:
        # built once: the agent looks at its devices every lockout.POLL_S
        described: dict[str, Any] = {
            "name": self.name,
            "profile": self.profile.name,
            "points": [self._with_interlocks(row) for row in self.profile.public_points()],
        }
        if self.stop_on_link_loss_s is not None:
            described["stop_on_link_loss_s"] = self.stop_on_link_loss_s
        return described

    def _with_interlocks(self, row: dict[str, Any]) -> dict[str, Any]:
        """A public point or command row with the interlocks guarding it, if any."""
        if row["access"] != "rw":
            return row
        kind = "guards_point" if row["kind"] == "point" else "guards_command"
        guarding = [
            interlock.public()
            for interlock in self.interlocks
            if getattr(interlock, kind) == row["name"]
            or (interlock.guards_point is None and interlock.guards_command is None)
        ]
        return {**row, "interlocks": guarding} if guarding else row

    def describe(self) -> dict[str, Any]:
        """What presence tells the controller: the device and its public points."""
        return dict(self._described)


@dataclass(frozen=True)
class Link:
    """Whether the agent could talk to a device at its last operation: `ok` (the device
    answered, a refusal such as a Modbus exception included) or `down` (no connection,
    no answer in time, a lost connection), since when, and the error that began it."""

    state: Literal["ok", "down"]
    since: str  # ISO 8601, UTC
    error: str = ""

    def public(self) -> dict[str, str]:
        return {"state": self.state, "since": self.since, "error": self.error}


@dataclass
class DeviceSet:
    devices: dict[str, Device] = field(default_factory=dict)
    _bus_locks: dict[str, PriorityLock] = field(default_factory=dict)
    # by device name: held by a change of the device from before its write until its
    # effect is seen (see change_lock)
    _change_locks: dict[str, PriorityLock] = field(default_factory=dict)
    # each device's link as its last operation left it (none yet: not known)
    links: dict[str, Link] = field(default_factory=dict)
    _quieting: set[asyncio.Task[None]] = field(default_factory=set)

    def get(self, name: str | None) -> Device | None:
        return self.devices.get(name) if name else None

    def bus_lock(self, device: Device) -> PriorityLock:
        return self._lock_of(str(device.driver.bus_key))

    def change_lock(self, device: Device) -> PriorityLock:
        """Changes of one device are made one at a time, each to its end: a write that
        waits for its effect frees the bus for reads and for other devices, but the next
        change of the same device waits until that effect is seen (or not), so no
        second write moves the setpoint the first one is waiting on."""
        if device.name not in self._change_locks:
            self._change_locks[device.name] = PriorityLock()
        return self._change_locks[device.name]

    def locks_for(self, plan: Plan, priority: int) -> contextlib.AbstractAsyncContextManager[Any]:
        """Hold the lock of every bus the plan uses (its device's, and those its
        interlocks read), always taken in the order of their keys: two commands that
        need the same two buses never each hold one and wait for the other. At each
        bus it waits behind the commands of higher `priority`, and of the same priority
        that came earlier, never behind those of lower priority. One bus (most
        commands): its lock itself, without a stack of one."""
        from tme.agents.interlocks import buses_of

        keys = sorted(buses_of(plan))
        if len(keys) == 1:
            return self._lock_of(keys[0]).at(priority)
        return self._holding(keys, priority)

    @contextlib.asynccontextmanager
    async def _holding(self, keys: list[str], priority: int) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._lock_of(key).at(priority))
            yield

    def _lock_of(self, key: str) -> PriorityLock:
        if key not in self._bus_locks:
            self._bus_locks[key] = PriorityLock()
        return self._bus_locks[key]

    def note_link(self, name: str, answered: bool, error: str = "") -> None:
        """What an operation on the device found of its link; a change of state starts
        a new `since` (a down link keeps the error that began it)."""
        state: Literal["ok", "down"] = "ok" if answered else "down"
        if name not in self.devices or (name in self.links and self.links[name].state == state):
            return
        since = datetime.now(UTC).isoformat(timespec="seconds")
        self.links[name] = Link(state, since, "" if answered else error[:MAX_LINK_ERROR])

    def describe(
        self, lockouts: Lockouts | None = None, stops: Lockouts | None = None
    ) -> list[dict[str, Any]]:
        """Each device as presence tells it, with its lockout or stop when it has one
        and its link once an operation found it."""
        locked = lockouts.all() if lockouts is not None else {}
        stopped = stops.all() if stops is not None else {}
        described = []
        for device in self.devices.values():
            extra: dict[str, Any] = {}
            if (lockout := locked.get(device.name)) is not None:
                extra["lockout"] = lockout.public()
            if (stop := stopped.get(device.name)) is not None:
                extra["stopped"] = stop.public()
            if (link := self.links.get(device.name)) is not None:
                extra["link"] = link.public()
            described.append({**device.describe(), **extra})
        return described

    def quiet_after_cut_off(self, commands: list[Command]) -> dict[str, float]:
        """The buses on which `commands` (started by the last process, never finished)
        were cut off, each with how long it stays quiet: its driver's request timeout.

        The cut-off request may still be on its way: a Modbus TCP device or a line
        answers it late, and a write lands late. Sent to at once, the device could take
        it between a new command's write and its read-back. Logged once per bus.
        """
        quiet: dict[str, tuple[float, str]] = {}
        for command in commands:
            device = self.get(command.device)
            timeout_s = getattr(device.driver, "request_timeout_s", None) if device else None
            if device is None or not isinstance(timeout_s, int | float):
                continue  # no bus (builtin ops), or a driver that does not say how long
            key = str(device.driver.bus_key)
            if timeout_s > quiet.get(key, (0.0, ""))[0]:
                quiet[key] = (float(timeout_s), command.id)
        for key, (seconds, command_id) in quiet.items():
            log.warning(
                "bus %s waits %g s (its request timeout) before its first request: command %s"
                " was cut off on it when the agent last stopped, and its request may still"
                " reach the device",
                key,
                seconds,
                command_id,
            )
        return {key: seconds for key, (seconds, _) in quiet.items()}

    async def start(self, quiet: dict[str, float] | None = None) -> None:
        """Start each distinct driver once; a device that fails to start is logged, not fatal.

        A driver reconnects on its next operation, so one unreachable machine must not keep
        the agent (and every other device) offline. A bus in `quiet` (bus key -> seconds)
        is held that long first: its lock is taken now, before any command can ask for
        it, and its driver started (its connection opened) only then. The others start
        at once, together.
        """
        quiet = quiet or {}
        starting = []
        for driver in self._distinct_drivers():
            seconds = quiet.get(str(driver.bus_key), 0.0)
            if seconds > 0:
                await self._hold(driver, seconds)
            else:
                starting.append(_start_driver(driver))
        # At once, not one after another: each bus is its own, and a device that does
        # not answer its connect would hold the agent's start (and its presence) for
        # its whole timeout, once per such device.
        await asyncio.gather(*starting)

    async def _hold(self, driver: Any, seconds: float) -> None:
        lock = self._lock_of(str(driver.bus_key))
        await lock.acquire()  # free: the agent runs no command before its devices start
        task = asyncio.get_running_loop().create_task(_start_after(driver, seconds, lock))
        self._quieting.add(task)
        task.add_done_callback(self._quieting.discard)

    async def stop(self) -> None:
        for task in list(self._quieting):
            task.cancel()
        await asyncio.gather(*self._quieting, return_exceptions=True)
        for driver in self._distinct_drivers():
            try:
                await driver.stop()
            except Exception:
                log.exception("driver %s did not stop cleanly", driver.bus_key)

    def _distinct_drivers(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for device in self.devices.values():
            seen.setdefault(id(device.driver), device.driver)
        return list(seen.values())


async def _start_driver(driver: Any) -> None:
    try:
        await driver.start()
    except TMEError as exc:
        log.warning("driver %s did not start (will retry on use): %s", driver.bus_key, exc.message)


async def _start_after(driver: Any, seconds: float, lock: PriorityLock) -> None:
    """Hold a bus `seconds` (commands for it wait for its lock), then start its driver."""
    try:
        await asyncio.sleep(seconds)  # the quiet time itself: a late frame lands in it
        await _start_driver(driver)
    finally:
        lock.release()


def build_devices(configs: dict[str, DeviceConfig]) -> DeviceSet:
    """Create drivers and load profiles; errors name the device's config key.

    Devices on one bus (same bus_key: one serial port, one TCP gateway) share one
    driver, so the port is opened once and one reader sees every reply. They must
    then name the same driver and the same connection settings.
    """
    devices: dict[str, Device] = {}
    buses: dict[str, tuple[str, DeviceConfig, Any]] = {}  # bus_key -> first device, its config
    for name, cfg in configs.items():
        key = f"devices.{name}"
        if cfg.profile is None:
            raise ConfigError(f"{key}.profile: a device needs a profile", key=f"{key}.profile")
        try:
            from tme.drivers.profile import load_profile
            from tme.drivers.registry import create_driver

            profile = load_profile(cfg.profile)
            driver = create_driver(cfg.driver, **cfg.connection)
        except TMEError as exc:
            raise ConfigError(f"{key}: {exc.message}", key=key) from exc
        units = getattr(driver, "units", None)
        if units is not None and cfg.unit not in units:
            raise ConfigError(
                f"{key}.unit: {cfg.unit} is not a device address on this bus (driver "
                f"{cfg.driver!r} takes {units.start}..{units.stop - 1})",
                key=f"{key}.unit",
            )
        bus_key = str(driver.bus_key)
        if bus_key in buses:
            first, first_cfg, driver = buses[bus_key]  # building a driver opens nothing
            _check_same_bus(key, cfg, first, first_cfg, bus_key)
        else:
            buses[bus_key] = (name, cfg, driver)
        devices[name] = Device(
            name=name,
            driver=driver,
            unit=cfg.unit,
            profile=profile,
            stop_on_link_loss_s=cfg.stop_on_link_loss_s,
        )
        if cfg.stop_on_link_loss_s is not None:
            _check_can_stop(devices[name], f"{key}.stop_on_link_loss_s")
    from tme.agents.interlocks import resolve

    resolve(devices, configs)
    return DeviceSet(devices)


def _check_can_stop(device: Device, key: str) -> None:
    """A device its agent may stop on its own needs something to write: safe values."""
    from tme.agents.checks import safe_values

    if not safe_values(device):
        writable = [n for n, p in device.profile.points.items() if p.access == "rw"]
        raise ConfigError(
            f"{key}: stopping {device.name!r} writes its safe values, and profile "
            f"{device.profile.name!r} gives none: set safe_value on the points a stop must "
            f"write ({', '.join(writable) or 'it has no writable point'})",
            key=key,
        )


def _check_same_bus(
    key: str, cfg: DeviceConfig, first: str, first_cfg: DeviceConfig, bus_key: str
) -> None:
    if cfg.driver != first_cfg.driver:
        raise ConfigError(
            f"{key}.driver: bus {bus_key} is already used by device {first!r} with driver "
            f"{first_cfg.driver!r}; one bus has one driver, got {cfg.driver!r}",
            key=f"{key}.driver",
        )
    if cfg.connection != first_cfg.connection:
        raise ConfigError(
            f"{key}.connection: bus {bus_key} is already used by device {first!r} with "
            f"connection {first_cfg.connection}; devices on one bus share it, got "
            f"{cfg.connection}",
            key=f"{key}.connection",
        )
