"""The Modbus drivers against the simulated plant (real servers on loopback, no mocks).

The machine's state is read from the simulator directly, never through TME.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ports import free_port
from waiting import wait_until

from tme.drivers.modbus import READ_SIZE, ModbusDriver, modbus_rtu, modbus_tcp
from tme.drivers.profile import DeviceProfile, load_profile
from tme.errors import DriverError, EnvelopeViolation
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]
PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP, TANK, CONVEYOR = 1, 2, 3


def profile(name: str) -> DeviceProfile:
    return load_profile(PROFILES / f"{name}.yaml")


@pytest.fixture
async def driver(still_plant_sim: PlantSimulator) -> AsyncIterator[ModbusDriver]:
    drv = modbus_tcp("127.0.0.1", still_plant_sim.port, timeout_s=0.5, retries=0)
    await drv.start()
    yield drv
    await drv.stop()


async def test_reads_every_table_type_scale_and_word_order(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    sim = still_plant_sim
    sim.write_bit(PUMP, 0, True, "coil")
    sim.write_bit(PUMP, 1, True, "discrete_input")
    sim.write_register(PUMP, 0, 1234)
    sim.write_register(PUMP, 0, 2999, "input_register")
    sim.write_register(PUMP, 1, 12.5, "input_register", "float32", "big")
    sim.write_register(PUMP, 3, 70000, "input_register", "uint32", "little")
    sim.write_register(TANK, 3, -123, "input_register", "int16")
    sim.write_register(TANK, 1, 4321.25, "input_register", "float32", "little")
    sim.write_register(CONVEYOR, 0, -100000, "input_register", "int32", "big")
    pump = await driver.read_points(
        profile("pump"),
        PUMP,
        ["run", "fault", "running", "speed_setpoint", "actual_speed", "flow", "run_time"],
    )
    assert pump == {
        "run": True,
        "fault": True,
        "running": False,
        "speed_setpoint": 1234,
        "actual_speed": 2999,
        "flow": 12.5,
        "run_time": 70000,
    }
    tank = await driver.read_points(profile("tank"), TANK, ["temperature", "volume", "level"])
    assert tank["temperature"] == -12.3
    assert tank["volume"] == 4321.25
    conveyor = await driver.read_points(profile("conveyor"), CONVEYOR, ["position"])
    assert conveyor == {"position": -100000}


async def test_writes_reach_the_machine(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    sim = still_plant_sim
    await driver.write_point(profile("pump"), PUMP, "speed_setpoint", 1500)
    await driver.write_point(profile("pump"), PUMP, "run", True)
    await driver.write_point(profile("tank"), TANK, "high_level_limit", 85.5)
    conveyor = profile("conveyor")
    await driver.write_point(conveyor, CONVEYOR, "speed_setpoint", -250)
    await driver.write_point(conveyor, CONVEYOR, "batch_size", 100_000)
    await driver.write_point(conveyor, CONVEYOR, "max_load", 250.5)
    assert sim.read_register(PUMP, 0) == 1500
    assert sim.read_bit(PUMP, 0) is True
    assert sim.read_register(TANK, 1, type_="int16") == 855
    assert sim.read_register(CONVEYOR, 0, type_="int16") == -250
    assert sim.read_register(CONVEYOR, 1, type_="uint32") == 100_000
    assert sim.read_register(CONVEYOR, 3, type_="float32") == 250.5


@pytest.mark.parametrize(
    ("point", "value"),
    [
        ("nope", 1),
        ("actual_speed", 5),
        ("speed_setpoint", "high"),
        ("speed_setpoint", 3001),
        ("speed_setpoint", -5),
        ("run", "yes"),
    ],
)
async def test_refused_writes_send_no_frame(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
    point: str,
    value: object,
) -> None:
    with pytest.raises(EnvelopeViolation):
        await driver.write_point(profile("pump"), PUMP, point, value)  # type: ignore[arg-type]
    assert still_plant_sim.request_count() == 0
    assert still_plant_sim.read_register(PUMP, 0) == 0


async def test_exception_response_carries_the_code(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    still_plant_sim.inject_fault(PUMP, table="holding_register", address=0, exception=6)
    with pytest.raises(DriverError) as info:
        await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"])
    assert info.value.modbus_exception == 6 and info.value.retryable
    still_plant_sim.inject_fault(PUMP, table="input_register", exception=2)
    with pytest.raises(DriverError) as info:
        await driver.read_points(profile("pump"), PUMP, ["actual_speed"])
    assert info.value.modbus_exception == 2 and not info.value.retryable
    still_plant_sim.clear_faults()
    assert await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"]) == {
        "speed_setpoint": 0
    }


async def test_slow_reply_times_out(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    still_plant_sim.inject_fault(PUMP, delay_s=2.0, remaining=1)
    with pytest.raises(DriverError) as info:
        await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"])
    assert info.value.retryable and info.value.modbus_exception is None
    assert not info.value.not_sent  # the request went out
    # said in TME's words: pymodbus's own ("No response received after 0 retries, continue
    # with next request") counted its retries, never the driver's, and told the operator
    # to go on
    assert info.value.message == "read 'speed_setpoint' (unit 1): no answer within 0.5 s"


async def test_a_read_without_answer_says_how_often_it_was_sent(
    still_plant_sim: PlantSimulator,
) -> None:
    drv = modbus_tcp("127.0.0.1", still_plant_sim.port, timeout_s=0.3, retries=1)
    still_plant_sim.inject_fault(PUMP, delay_s=2.0, remaining=2)
    try:
        with pytest.raises(DriverError) as info:
            await drv.read_points(profile("pump"), PUMP, ["speed_setpoint"])
    finally:
        await drv.stop()
    assert info.value.message == (
        "read 'speed_setpoint' (unit 1): no answer within 0.3 s (sent 2 times)"
    )


async def test_a_write_that_got_no_answer_in_time_may_have_landed(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    """Its frame went out: the device may act on it (here it does, late), so the failure
    does not say not_sent, and the controller does not retry the write."""
    still_plant_sim.inject_fault(PUMP, delay_s=2.0, remaining=1)
    with pytest.raises(DriverError) as info:
        await driver.write_point(profile("pump"), PUMP, "speed_setpoint", 100)
    assert not info.value.not_sent
    assert still_plant_sim.writes_to(PUMP, 0) == [(100,)]  # it reached the machine


@pytest.mark.parametrize("link", ["tcp", "rtu"])
async def test_a_connection_that_cannot_be_opened_sends_nothing(link: str, tmp_path: Path) -> None:
    """Nothing listens on the port, or the serial port does not exist: pymodbus's
    connect() answers False, before any request is handed to it (not_sent: the agent
    reports the command not started, so even a write may be retried)."""
    if link == "tcp":
        drv = modbus_tcp("127.0.0.1", free_port(), timeout_s=0.5, retries=1)
    else:
        drv = modbus_rtu(str(tmp_path / "no-such-tty"), timeout_s=0.5, retries=1)
    try:
        with pytest.raises(DriverError, match="cannot connect") as info:
            await drv.write_point(profile("pump"), PUMP, "speed_setpoint", 100)
        assert info.value.not_sent and info.value.retryable
        with pytest.raises(DriverError, match="cannot connect") as info:
            await drv.read_points(profile("pump"), PUMP, ["speed_setpoint"])  # tried twice
        assert info.value.not_sent
    finally:
        await drv.stop()


async def test_dropped_connection_fails_then_reconnects(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    still_plant_sim.write_register(PUMP, 0, 777)
    still_plant_sim.inject_fault(PUMP, drop=True, remaining=1)
    with pytest.raises(DriverError):
        await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"])
    assert await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"]) == {
        "speed_setpoint": 777
    }


@pytest.mark.parametrize("link", ["socket", "pty"])
async def test_rtu_round_trip(link: str) -> None:
    rtu = "pty" if link == "pty" else "socket://127.0.0.1:0"
    with PlantSimulator.run_in_thread(rtu=rtu, tick_s=None) as sim:
        drv = modbus_rtu(sim.rtu_url, baudrate=115200, timeout_s=1.0, retries=1)
        await drv.start()
        try:
            await drv.write_point(profile("pump"), PUMP, "speed_setpoint", 2100)
            assert sim.read_register(PUMP, 0) == 2100
            sim.write_register(TANK, 1, 99.5, "input_register", "float32", "little")
            assert await drv.read_points(profile("tank"), TANK, ["volume"]) == {"volume": 99.5}
            assert {r.link for r in sim.requests} == {"rtu"}
        finally:
            await drv.stop()


async def test_plant_physics_follow_the_pump(plant_sim: PlantSimulator) -> None:
    drv = modbus_tcp("127.0.0.1", plant_sim.port, timeout_s=1.0)
    await drv.start()
    try:
        before = plant_sim.read_register(TANK, 1, "input_register", "float32", "little")
        await drv.write_point(profile("pump"), PUMP, "speed_setpoint", 3000)
        await drv.write_point(profile("pump"), PUMP, "run", True)
        wait_until(lambda: plant_sim.read_bit(PUMP, 0, "discrete_input"), what="pump running")
        wait_until(
            lambda: (
                plant_sim.read_register(TANK, 1, "input_register", "float32", "little") > before + 1
            ),
            what="tank filling",
        )
    finally:
        await drv.stop()


async def test_dropped_write_is_not_applied(
    still_plant_sim: PlantSimulator,
    driver: ModbusDriver,
) -> None:
    """The drop fault closes the connection instead of answering: the write never lands."""
    still_plant_sim.inject_fault(PUMP, table="holding_register", drop=True, remaining=1)
    with pytest.raises(DriverError) as info:
        await driver.write_point(profile("pump"), PUMP, "speed_setpoint", 1200)
    assert not info.value.not_sent  # lost mid-request: the driver cannot know it never landed
    assert still_plant_sim.read_register(PUMP, 0) == 0
    await driver.write_point(profile("pump"), PUMP, "speed_setpoint", 1300)
    assert still_plant_sim.read_register(PUMP, 0) == 1300


async def test_a_tcp_connection_reads_a_frames_worth_at_a_time(driver: ModbusDriver) -> None:
    """Not asyncio's 256 KiB a read, mapped and unmapped for each answer of a few bytes
    (its system time was the largest single cost of a write with its read-back)."""
    assert await driver.read_points(profile("pump"), PUMP, ["speed_setpoint"]) is not None
    client = driver._client
    assert client is not None

    assert client.ctx.transport.max_size == READ_SIZE  # type: ignore[attr-defined]
