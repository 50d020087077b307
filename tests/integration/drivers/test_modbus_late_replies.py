"""Late replies and unanswered requests, against the simulated plant (no mocks).

The plant's `delay_s` fault answers late. The timings below order three events:
the first request times out, the second is sent, then the late reply arrives
while the second still waits for its own (all with margins of 0.3 s or more).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from waiting import wait_until

from tme.drivers.modbus import ModbusDriver, modbus_rtu, modbus_tcp
from tme.drivers.profile import load_profile
from tme.errors import DriverError
from tme.simulators.modbus_plant import PlantSimulator

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP_PROFILE = load_profile(PROFILES / "pump.yaml")
TANK_PROFILE = load_profile(PROFILES / "tank.yaml")
PUMP, TANK = 1, 2
TIMEOUT_S = 1.0
FIRST_DELAY_S = 1.4  # after the second request goes out, before its own answer
SECOND_DELAY_S = 0.7  # well inside the timeout


def _driver(sim: PlantSimulator, link: str) -> ModbusDriver:
    if link == "tcp":
        return modbus_tcp("127.0.0.1", sim.port, timeout_s=TIMEOUT_S, retries=0)
    return modbus_rtu(sim.rtu_url, baudrate=115200, timeout_s=TIMEOUT_S, retries=0)


@pytest.mark.parametrize("link", ["tcp", "socket", "pty"])
async def test_late_reply_is_not_the_answer_to_the_next_request(link: str) -> None:
    rtu = "pty" if link == "pty" else "socket://127.0.0.1:0"
    with PlantSimulator.run_in_thread(rtu=rtu, tick_s=None) as sim:
        sim.write_register(TANK, 0, 42)  # valve_opening
        sim.write_register(TANK, 1, 900, type_="int16")  # high_level_limit, scale 0.1
        sim.inject_fault(TANK, table="holding_register", address=0, delay_s=FIRST_DELAY_S)
        sim.inject_fault(TANK, table="holding_register", address=1, delay_s=SECOND_DELAY_S)
        driver = _driver(sim, link)
        await driver.start()
        try:
            with pytest.raises(DriverError):
                await driver.read_points(TANK_PROFILE, TANK, ["valve_opening"])
            assert await driver.read_points(TANK_PROFILE, TANK, ["high_level_limit"]) == {
                "high_level_limit": 90.0
            }
        finally:
            await driver.stop()


@pytest.mark.parametrize("link", ["tcp", "socket"])
async def test_unanswered_write_is_sent_once(link: str) -> None:
    with PlantSimulator.run_in_thread(rtu="socket://127.0.0.1:0", tick_s=None) as sim:
        sim.inject_fault(PUMP, table="holding_register", address=0, delay_s=0.8, remaining=1)
        driver = (
            modbus_tcp("127.0.0.1", sim.port, timeout_s=0.5, retries=1)
            if link == "tcp"
            else modbus_rtu(sim.rtu_url, baudrate=115200, timeout_s=0.5, retries=1)
        )
        await driver.start()
        try:
            with pytest.raises(DriverError):
                await driver.write_point(PUMP_PROFILE, PUMP, "speed_setpoint", 1200)
            wait_until(lambda: sim.read_register(PUMP, 0) == 1200, what="the late write lands")
            await driver.write_point(PUMP_PROFILE, PUMP, "speed_setpoint", 1300)
            assert sim.read_register(PUMP, 0) == 1300
            assert sim.request_count(PUMP, writes_only=True) == 2
        finally:
            await driver.stop()


async def test_reads_are_retried_by_the_driver() -> None:
    with PlantSimulator.run_in_thread(tick_s=None) as sim:
        sim.write_register(PUMP, 0, 777)
        sim.inject_fault(PUMP, table="holding_register", address=0, delay_s=0.8, remaining=1)
        driver = modbus_tcp("127.0.0.1", sim.port, timeout_s=0.5, retries=1)
        await driver.start()
        try:
            assert await driver.read_points(PUMP_PROFILE, PUMP, ["speed_setpoint"]) == {
                "speed_setpoint": 777
            }
            assert sim.request_count(PUMP) == 2
        finally:
            await driver.stop()


async def test_commands_cut_off_while_the_line_settles_do_not_keep_it_quiet() -> None:
    """After an unanswered request the serial line waits out timeout_s (1 s) before the
    next one. Tasks whose timeout (0.6 s) ends inside that wait sent nothing: they must
    not restart it, or a bus polled that often would never send a request again."""
    with PlantSimulator.run_in_thread(rtu="socket://127.0.0.1:0", tick_s=None) as sim:
        sim.write_register(PUMP, 0, 777)
        sim.inject_fault(PUMP, table="holding_register", address=0, delay_s=3.0, remaining=1)
        driver = modbus_rtu(sim.rtu_url, baudrate=115200, timeout_s=TIMEOUT_S, retries=0)
        await driver.start()
        try:
            with pytest.raises(TimeoutError):  # the task's timeout, shorter than the driver's
                await asyncio.wait_for(
                    driver.read_points(PUMP_PROFILE, PUMP, ["speed_setpoint"]), 0.3
                )
            answers = []
            for _ in range(3):
                try:
                    read = driver.read_points(PUMP_PROFILE, PUMP, ["speed_setpoint"])
                    answers.append(await asyncio.wait_for(read, 0.6))
                except TimeoutError:
                    answers.append(None)
            assert {"speed_setpoint": 777} in answers, f"the line never spoke again: {answers}"
            assert sim.request_count(PUMP) == 1 + sum(a is not None for a in answers)
        finally:
            await driver.stop()
