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
    """Create drivers and load profiles; errors name the device's config key."""
    devices: dict[str, Device] = {}
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
        devices[name] = Device(name=name, driver=driver, unit=cfg.unit, profile=profile)
    return DeviceSet(devices)
