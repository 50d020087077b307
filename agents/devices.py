"""The agent's devices: each one a driver, a unit id and a profile, plus one lock per bus.

Two devices on one RS-485 line (or behind one Modbus/TCP gateway) share a bus_key,
so they share a lock: operations never interleave on one wire, whatever their unit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tme.agents.agent_config import DeviceConfig
from tme.errors import ConfigError, TMEError

if TYPE_CHECKING:
    from tme.drivers.profile import DeviceProfile

log = logging.getLogger(__name__)


@dataclass
class Device:
    name: str
    driver: Any  # a tme.drivers.base.Driver with some of PointReader/PointWriter/CommandRunner
    unit: int
    profile: DeviceProfile

    def describe(self) -> dict[str, Any]:
        """What presence tells the controller: the device and its public points."""
        return {
            "name": self.name,
            "profile": self.profile.name,
            "points": self.profile.public_points(),
        }


@dataclass
class DeviceSet:
    devices: dict[str, Device] = field(default_factory=dict)
    _bus_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def get(self, name: str | None) -> Device | None:
        return self.devices.get(name) if name else None

    def bus_lock(self, device: Device) -> asyncio.Lock:
        key = str(device.driver.bus_key)
        if key not in self._bus_locks:
            self._bus_locks[key] = asyncio.Lock()
        return self._bus_locks[key]

    def describe(self) -> list[dict[str, Any]]:
        return [device.describe() for device in self.devices.values()]

    async def start(self) -> None:
        """Start each distinct driver once; a device that fails to start is logged, not fatal.

        A driver reconnects on its next operation, so one unreachable machine must not keep
        the agent (and every other device) offline.
        """
        for driver in self._distinct_drivers():
            try:
                await driver.start()
            except TMEError as exc:
                log.warning(
                    "driver %s did not start (will retry on use): %s", driver.bus_key, exc.message
                )

    async def stop(self) -> None:
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
        devices[name] = Device(name=name, driver=driver, unit=cfg.unit, profile=profile)
    return DeviceSet(devices)


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
