"""Interlocks and step limits, read from the simulated plant just before a write, through
the agent's executor as it runs a command: a refused write sends no frame."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from waiting import wait_until_async

from tme.agents.agent_config import DeviceConfig, InterlockConfig, parse_agent_config
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet, build_devices
from tme.agents.executor import CommandExecutor
from tme.errors import ConfigError
from tme.protocol import Command, Event, utcnow
from tme.simulators.instrument import SerialInstrument
from tme.simulators.modbus_plant import PlantSimulator

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP, TANK = 1, 2  # the plant's units
SPEED = 0  # the pump's speed_setpoint register
LEVEL = 0  # the tank's level input register (0.1 %)
TANK_FULL = InterlockConfig(
    point="speed_setpoint",
    requires_device="tank",
    requires_point="level",
    condition="below",
    limit=95.0,
    why="tank nearly full",
)


@pytest.fixture
def plant() -> Iterator[PlantSimulator]:
    with PlantSimulator.run_in_thread(tick_s=None) as sim:  # values stay as set
        yield sim


@pytest.fixture
def pump_profile(tmp_path: Path) -> Path:
    """The shipped pump profile, its speed moving at most 600 rpm a write, safe at 0."""
    data = yaml.safe_load((PROFILES / "pump.yaml").read_text())
    data["points"]["speed_setpoint"].update(max_step=600, safe_value=0)
    path = tmp_path / "pump.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plant_devices(
    sim: PlantSimulator, pump_profile: Path, *interlocks: InterlockConfig
) -> DeviceSet:
    connection = {"host": "127.0.0.1", "port": sim.port, "timeout_s": 1.0}
    return build_devices(
        {
            "pump": DeviceConfig(
                "modbus_tcp", connection, PUMP, pump_profile, interlocks=interlocks
            ),
            "tank": DeviceConfig("modbus_tcp", connection, TANK, PROFILES / "tank.yaml"),
        }
    )


async def run(
    devices: DeviceSet, record: CommandRecord, device: str, op: str, params: dict[str, Any]
) -> tuple[Event, list[Event]]:
    """The command's final event and every event it sent, run as the agent runs it."""
    sent: list[Event] = []
    executor = CommandExecutor(record, devices, sent.append, worker_count=2, allow_shell=False)
    command = Command(
        task_id=1,
        site="s",
        agent="a",
        op=op,
        device=device,
        params=params,
        timeout_s=5,
        not_after=utcnow() + timedelta(minutes=1),
    )
    record.add(command)
    await devices.start()
    try:
        return await executor.execute(command), sent
    finally:
        await devices.stop()


def set_level(sim: PlantSimulator, percent: float) -> None:
    sim.write_register(TANK, LEVEL, round(percent * 10), table="input_register")


def pump_at_400(sim: PlantSimulator, pump_profile: Path, *, level: float) -> DeviceSet:
    """The pump at 400 rpm, its speed guarded by the tank's level, set to `level` %."""
    set_level(sim, level)
    sim.write_register(PUMP, SPEED, 400)
    return plant_devices(sim, pump_profile, TANK_FULL)


async def test_a_write_its_interlock_refuses_is_rejected_and_sends_no_frame(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    devices = pump_at_400(plant, pump_profile, level=97.2)
    final, sent = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 800}
    )
    assert final.type == "rejected"
    assert final.not_started is True
    assert final.reason is not None
    assert "interlock: tank.level is 97.2 %" in final.reason
    assert "needs it below 95: tank nearly full" in final.reason
    assert "nothing was written" in final.reason
    assert [e.type for e in sent] == ["accepted", "rejected"]  # never started
    assert plant.writes_to(PUMP, SPEED) == []
    assert plant.read_register(PUMP, SPEED) == 400


async def test_a_write_its_interlock_allows_lands_and_says_what_was_read(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    devices = pump_at_400(plant, pump_profile, level=41.5)
    final, sent = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 800}
    )
    assert final.type == "succeeded", final.reason
    assert plant.read_register(PUMP, SPEED) == 800
    lines = "\n".join(e.line for e in sent if e.line)
    assert "interlock tank.level below 95: 41.5 (holds)" in lines


async def test_the_safe_value_is_written_whatever_the_interlock_and_the_step(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    """Stopping the pump must not wait for the tank it would overfill, nor for a ramp."""
    set_level(plant, 99.0)
    plant.write_register(PUMP, SPEED, 2400)
    devices = plant_devices(plant, pump_profile, TANK_FULL)
    final, sent = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 0}
    )
    assert final.type == "succeeded", final.reason
    assert plant.read_register(PUMP, SPEED) == 0
    assert "is its safe value: always allowed" in "\n".join(e.line for e in sent if e.line)


async def test_a_write_beyond_max_step_from_the_present_value_is_rejected(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    plant.write_register(PUMP, SPEED, 400)
    devices = plant_devices(plant, pump_profile)
    final, _ = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 1500}
    )
    assert final.type == "rejected"
    assert final.reason is not None
    assert "from 400 to 1500 rpm is a step of 1100, above its max_step 600" in final.reason
    assert plant.writes_to(PUMP, SPEED) == []

    within, _ = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 1000}
    )
    assert within.type == "succeeded", within.reason
    assert plant.read_register(PUMP, SPEED) == 1000


async def test_an_interlock_without_a_point_guards_every_change_but_not_reads(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    mixer_off = InterlockConfig(
        requires_device="tank", requires_point="mixer", condition="equals", limit=False
    )
    plant.write_bit(TANK, 0, True)  # the mixer runs
    devices = plant_devices(plant, pump_profile, mixer_off)
    final, _ = await run(devices, record, "pump", "modbus.write", {"point": "run", "value": True})
    assert final.type == "rejected"
    assert final.reason is not None
    assert "tank.mixer is True, and its write of 'run' needs it equals false" in final.reason
    assert plant.read_bit(PUMP, 0) is False

    read, _ = await run(devices, record, "pump", "modbus.read", {"point": "run"})
    assert read.type == "succeeded"


async def test_an_interlock_that_cannot_be_read_fails_the_write_unstarted(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    plant.inject_fault(unit=TANK, exception=4)  # the tank answers every request 04
    devices = plant_devices(plant, pump_profile, TANK_FULL)
    final, _ = await run(
        devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 300}
    )
    assert final.type == "failed"
    assert final.not_started is True
    assert final.reason is not None
    assert final.reason.startswith("could not read what this change's interlocks")
    assert plant.writes_to(PUMP, SPEED) == []


async def test_an_interlock_on_another_bus_waits_for_that_bus(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    """Nothing else runs on the bus the interlock reads between its reading and the write."""
    with PlantSimulator.run_in_thread(tick_s=None) as other:
        set_level(other, 20.0)
        connection = {"host": "127.0.0.1", "port": plant.port, "timeout_s": 1.0}
        elsewhere = {"host": "127.0.0.1", "port": other.port, "timeout_s": 1.0}
        devices = build_devices(
            {
                "pump": DeviceConfig(
                    "modbus_tcp", connection, PUMP, pump_profile, interlocks=(TANK_FULL,)
                ),
                "tank": DeviceConfig("modbus_tcp", elsewhere, TANK, PROFILES / "tank.yaml"),
            }
        )
        tank_bus = devices.bus_lock(devices.devices["tank"])
        await tank_bus.acquire()  # a long operation on the tank's bus
        write = asyncio.ensure_future(
            run(devices, record, "pump", "modbus.write", {"point": "speed_setpoint", "value": 500})
        )
        # the write waits for the tank's bus before it reads the level, let alone writes
        await wait_until_async(lambda: tank_bus._waiters, what="the write waits for the bus")
        assert not write.done()
        assert plant.writes_to(PUMP, SPEED) == []
        set_level(other, 98.0)  # what it reads once the bus is free
        tank_bus.release()
        final, _ = await asyncio.wait_for(write, 10)
        assert final.type == "rejected", final.reason
        assert plant.writes_to(PUMP, SPEED) == []


def test_presence_tells_each_guarded_point_its_interlocks_step_and_safe_value(
    plant: PlantSimulator, pump_profile: Path
) -> None:
    devices = plant_devices(plant, pump_profile, TANK_FULL)
    points = {p["name"]: p for p in devices.describe()[0]["points"]}
    assert points["speed_setpoint"]["max_step"] == 600
    assert points["speed_setpoint"]["safe_value"] == 0
    assert points["speed_setpoint"]["interlocks"] == [
        {"device": "tank", "point": "level", "below": 95.0, "why": "tank nearly full"}
    ]
    assert "interlocks" not in points["run"]


@pytest.mark.parametrize(
    ("interlock", "key", "message"),
    [
        (
            {"point": "speed", "requires": {"device": "tank", "point": "level", "below": 95}},
            "devices.pump.interlocks.0.point",
            "'speed' is not a point of profile 'pump'; did you mean 'speed_setpoint'",
        ),
        (
            {"point": "flow", "requires": {"device": "tank", "point": "level", "below": 95}},
            "devices.pump.interlocks.0.point",
            "'flow' is read-only",
        ),
        (
            {"requires": {"device": "tnak", "point": "level", "below": 95}},
            "devices.pump.interlocks.0.requires.device",
            "'tnak' is not a device of this agent; did you mean 'tank'",
        ),
        (
            {"requires": {"device": "tank", "point": "levl", "below": 95}},
            "devices.pump.interlocks.0.requires.point",
            "did you mean 'level'",
        ),
        (
            {"requires": {"device": "tank", "point": "high_level", "below": 1}},
            "devices.pump.interlocks.0.requires.below",
            "tank.high_level is true or false: use equals",
        ),
        (
            {"requires": {"device": "tank", "point": "level", "equals": True}},
            "devices.pump.interlocks.0.requires.equals",
            "tank.level is a uint16: give a number",
        ),
    ],
)
def test_an_interlock_naming_what_is_not_there_is_a_config_error(
    interlock: dict[str, Any], key: str, message: str
) -> None:
    config = parse_agent_config(
        {
            "site": "s",
            "agent": "a",
            "devices": {
                "pump": {
                    "driver": "modbus_tcp",
                    "connection": {"host": "127.0.0.1", "port": 5020},
                    "unit": 1,
                    "profile": str(PROFILES / "pump.yaml"),
                    "interlocks": [interlock],
                },
                "tank": {
                    "driver": "modbus_tcp",
                    "connection": {"host": "127.0.0.1", "port": 5020},
                    "unit": 2,
                    "profile": str(PROFILES / "tank.yaml"),
                },
            },
        }
    )
    with pytest.raises(ConfigError) as info:
        build_devices(config.devices)
    assert info.value.key == key
    assert message in info.value.message


@pytest.mark.parametrize(
    ("interlock", "problem"),
    [
        ({"requires": {"point": "level"}}, "give exactly one of below, above, equals"),
        (
            {"requires": {"point": "level", "below": 1, "above": 0}},
            "give exactly one of below, above, equals",
        ),
        ({"requires": {"point": "level", "equals": "on"}}, "expected a number or true/false"),
        ({"point": "x", "command": "y", "requires": {"point": "a", "below": 1}}, "not both"),
        ({"point": "x"}, "requires: field required"),
        ({"requires": {"point": "level", "below": 1}, "wyh": "x"}, "did you mean 'why'"),
    ],
)
def test_an_interlock_that_does_not_say_one_condition_is_refused_at_load(
    interlock: dict[str, Any], problem: str
) -> None:
    data = {
        "site": "s",
        "agent": "a",
        "devices": {"pump": {"driver": "modbus_tcp", "interlocks": [interlock]}},
    }
    with pytest.raises(ConfigError, match=r"interlocks\.0") as info:
        parse_agent_config(data)
    assert problem in info.value.message


async def test_an_interlock_on_a_serial_command_guards_that_command_only(
    plant: PlantSimulator, record: CommandRecord
) -> None:
    """The power supply's output may go on only while the tank (a Modbus device on
    another bus) is below 95 %; its other commands are not held by it."""
    set_level(plant, 97.0)
    with SerialInstrument.run_in_thread() as meter:
        devices = build_devices(
            {
                "meter": DeviceConfig(
                    "serial",
                    {"port": meter.url, "timeout_s": 1.0},
                    profile=PROFILES / "instrument.yaml",
                    interlocks=(
                        InterlockConfig(
                            command="output",
                            requires_device="tank",
                            requires_point="level",
                            condition="below",
                            limit=95.0,
                        ),
                    ),
                ),
                "tank": DeviceConfig(
                    "modbus_tcp",
                    {"host": "127.0.0.1", "port": plant.port, "timeout_s": 1.0},
                    TANK,
                    PROFILES / "tank.yaml",
                ),
            }
        )
        on = {"command": "output", "args": ["ON"]}
        final, _ = await run(devices, record, "meter", "serial.command", on)
        assert final.type == "rejected"
        assert final.reason is not None
        assert "its serial command 'output' needs it below 95" in final.reason
        assert not any(line.startswith("OUTP") for line in meter.requests)

        volts = {"command": "set_voltage", "args": [12.5]}
        other, _ = await run(devices, record, "meter", "serial.command", volts)
        assert other.type == "succeeded", other.reason
        assert "SOUR:VOLT 12.5" in meter.requests
