"""A Modbus TCP connection that could not be opened in time sent nothing: the command is
reported not started (the controller may retry it, a write too), with a reason that
says so. A timeout once the request went out stays `timed_out`: the device may have
acted on it.

The device that never answers a connect is a real listening socket whose accept queue
is full (listen(0) and one connection waiting in it): Linux drops every further SYN,
so a connect waits until its timeout, as to a host that is down.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from waiting import wait_until

from tme.agents.devices import Device
from tme.drivers.modbus import ModbusDriver, modbus_tcp
from tme.drivers.profile import load_profile
from tme.errors import DriverError
from tme.protocol import Event
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]
PUMP_PROFILE = load_profile(Path(__file__).resolve().parents[3] / "configs/profiles/pump.yaml")
PUMP = 1
SPEED_SETPOINT = 0  # its holding register


def _write(run_alone, driver: ModbusDriver) -> Awaitable[Event]:
    """A write of the pump's speed setpoint through the executor, 0.3 s to run."""
    pump = Device("pump1", driver, PUMP, PUMP_PROFILE)
    return run_alone(pump, "modbus.write", {"point": "speed_setpoint", "value": 100}, 0.3)


async def test_a_connect_that_times_out_in_the_driver_sends_nothing(unanswered_port: int) -> None:
    """pymodbus gives up after the driver's timeout_s: not sent, and the error says the
    connection could not be opened within it (not only "cannot connect")."""
    driver = modbus_tcp("127.0.0.1", unanswered_port, timeout_s=0.3, retries=0)
    try:
        with pytest.raises(DriverError) as info:
            await driver.write_point(PUMP_PROFILE, PUMP, "speed_setpoint", 100)
    finally:
        await driver.stop()
    assert info.value.not_sent and info.value.retryable
    assert info.value.message == (
        f"cannot connect to tcp:127.0.0.1:{unanswered_port}:"
        " the connection could not be opened within 0.3 s"
    )
    assert driver.requests_sent == 0


async def test_a_command_whose_timeout_ends_while_connecting_is_not_started(
    unanswered_port: int, run_alone
) -> None:
    """The command's timeout (0.3 s) runs out before the driver's (5 s), while the
    connection is still opening: no frame left, so the write is reported not started,
    not timed_out (which the controller may not retry for a write)."""
    driver = modbus_tcp("127.0.0.1", unanswered_port, timeout_s=5.0, retries=0)
    final = await _write(run_alone, driver)
    assert final.type == "failed" and final.not_started
    assert final.reason == (
        f"cannot connect to tcp:127.0.0.1:{unanswered_port}: the connection could not be"
        " opened within 0.3 s (the command's timeout); nothing was sent to the device"
    )


async def test_a_command_whose_timeout_ends_after_its_frame_left_timed_out(
    still_plant_sim: PlantSimulator, run_alone
) -> None:
    """The plant answers late: the write's frame went out and landed, so the command
    timed out having started (a write is then not retried)."""
    still_plant_sim.inject_fault(PUMP, delay_s=1.0, remaining=1)
    driver = modbus_tcp("127.0.0.1", still_plant_sim.port, timeout_s=5.0, retries=0)
    final = await _write(run_alone, driver)
    assert final.type == "timed_out" and not final.not_started
    assert driver.requests_sent == 1
    wait_until(
        lambda: still_plant_sim.writes_to(PUMP, SPEED_SETPOINT) == [(100,)],
        what="the late write to land on the plant",
    )
