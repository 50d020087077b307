"""Devices on one bus share one driver: the port is opened once (real plant on a pty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tme.agents.agent_config import DeviceConfig
from tme.agents.devices import build_devices
from tme.errors import ConfigError
from tme.simulators.modbus_plant import PlantSimulator

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"


def rtu_device(url: str, unit: int, profile: str, **connection: object) -> DeviceConfig:
    return DeviceConfig(
        driver="modbus_rtu",
        connection={"port": url, "baudrate": 115200, "timeout_s": 1.0, **connection},
        unit=unit,
        profile=PROFILES / f"{profile}.yaml",
    )


async def test_two_units_on_one_serial_port_share_a_driver() -> None:
    with PlantSimulator.run_in_thread(rtu="pty", tick_s=None) as sim:
        sim.write_register(1, 0, 1500)  # pump speed_setpoint
        sim.write_register(2, 0, 42)  # tank valve_opening
        devices = build_devices(
            {
                "pump": rtu_device(sim.rtu_url, 1, "pump"),
                "tank": rtu_device(sim.rtu_url, 2, "tank"),
            }
        )
        pump, tank = devices.devices["pump"], devices.devices["tank"]
        assert pump.driver is tank.driver
        assert devices.bus_lock(pump) is devices.bus_lock(tank)
        await devices.start()
        try:
            for _ in range(10):
                for device, point, expected in (
                    (pump, "speed_setpoint", 1500),
                    (tank, "valve_opening", 42),
                ):
                    async with devices.bus_lock(device):
                        values = await device.driver.read_points(
                            device.profile, device.unit, [point]
                        )
                    assert values == {point: expected}
        finally:
            await devices.stop()


def test_one_bus_with_different_settings_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="already used by device 'pump'") as info:
        build_devices(
            {
                "pump": rtu_device("/dev/ttyUSB0", 1, "pump"),
                "tank": rtu_device("/dev/ttyUSB0", 2, "tank", baudrate=9600),
            }
        )
    assert info.value.key == "devices.tank.connection"


def test_one_port_with_two_drivers_is_a_config_error() -> None:
    serial = DeviceConfig(
        driver="serial",
        connection={"port": "/dev/ttyUSB0"},
        profile=PROFILES / "instrument.yaml",
    )
    with pytest.raises(ConfigError, match="one bus has one driver") as info:
        build_devices({"pump": rtu_device("/dev/ttyUSB0", 1, "pump"), "psu": serial})
    assert info.value.key == "devices.psu.driver"


def test_one_port_under_two_paths_is_one_bus(tmp_path: Path) -> None:
    """A by-id link and the device node it points to are one wire: not two drivers."""
    with PlantSimulator.run_in_thread(rtu="pty", tick_s=None) as sim:
        alias = tmp_path / "usb-FTDI_FT232R-if00-port0"
        alias.symlink_to(sim.rtu_url)
        with pytest.raises(ConfigError, match=r"bus serial:\S+ is already used by device 'pump'"):
            build_devices(
                {
                    "pump": rtu_device(sim.rtu_url, 1, "pump"),
                    "tank": rtu_device(str(alias), 2, "tank"),
                }
            )


@pytest.mark.parametrize("unit", [0, 248, 255])
def test_an_rtu_unit_outside_1_to_247_is_a_config_error(unit: int) -> None:
    """Unit 0 on an RS-485 line is the broadcast address: every device on the line would
    take the device's writes (and none answers). 248..255 are reserved."""
    with pytest.raises(ConfigError, match=r"1\.\.247") as info:
        build_devices({"pump": rtu_device("/dev/ttyUSB0", unit, "pump")})
    assert info.value.key == "devices.pump.unit"


def test_a_tcp_device_may_use_unit_0_and_255() -> None:
    for unit in (0, 255):
        tcp = DeviceConfig(
            driver="modbus_tcp",
            connection={"host": "127.0.0.1", "port": 5020},
            unit=unit,
            profile=PROFILES / "pump.yaml",
        )
        assert build_devices({"pump": tcp}).devices["pump"].unit == unit
