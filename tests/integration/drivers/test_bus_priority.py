"""Commands waiting for a bus, through the agent's executor on the simulated plant: the
higher priority goes first, equal priorities in the order they came, a stop before them
all; the command holding the bus is never interrupted.

The bus is held by a read the plant answers late (a delay fault), for exactly as long
as the test needs: `answer_held` lets it answer once every other command waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_interlocks import PROFILES, PUMP, TANK
from waiting import wait_until_async

from tme.agents.agent_config import DeviceConfig
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet, build_devices
from tme.agents.executor import CommandExecutor
from tme.protocol import Command, Event, utcnow
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["test_interlocks"]  # its plant and pump_profile fixtures


@pytest.fixture
async def devices(plant: PlantSimulator, pump_profile: Path) -> AsyncIterator[DeviceSet]:
    """The pump and the tank on one Modbus/TCP connection: one bus, one lock. The driver
    waits long for an answer, so the held read holds the bus until it is answered."""
    connection = {"host": "127.0.0.1", "port": plant.port, "timeout_s": 30.0}
    devices = build_devices(
        {
            "pump": DeviceConfig("modbus_tcp", connection, PUMP, pump_profile),
            "tank": DeviceConfig("modbus_tcp", connection, TANK, PROFILES / "tank.yaml"),
        }
    )
    await devices.start()
    yield devices
    await devices.stop()


def _command(device: str, priority: int, op: str = "modbus.read", **params: Any) -> Command:
    point = "speed_setpoint" if device == "pump" else "level"
    return Command(
        task_id=1,
        site="s",
        agent="a",
        op=op,
        device=device,
        params=params or {"point": point},
        timeout_s=30,
        not_after=utcnow() + timedelta(minutes=1),
        priority=priority,
    )


async def _run_behind_a_held_read(
    plant: PlantSimulator,
    devices: DeviceSet,
    record: CommandRecord,
    queued: list[Command],
    workers: int = 8,
) -> list[str]:
    """Hold the bus (and one of `workers`) with a read of the pump the plant answers
    late, queue `queued` in that order behind it, let the plant answer: the ids in the
    order they started."""
    started: list[str] = []
    accepted: list[str] = []  # an accepted command goes on to wait for its bus at once

    def publish(event: Event) -> None:
        if event.type == "started":
            started.append(event.command_id)
        elif event.type == "accepted":
            accepted.append(event.command_id)

    executor = CommandExecutor(record, devices, publish, worker_count=workers, allow_shell=False)
    plant.inject_fault(unit=PUMP, table="holding_register", delay_s=60, remaining=1)
    holder = _command("pump", 0)
    tasks = []
    for number, command in enumerate([holder, *queued]):
        record.add(command)
        tasks.append(asyncio.create_task(executor.execute(command)))
        if number == 0:
            await wait_until_async(lambda: plant.held_requests == 1, what="the held read")
        else:
            await wait_until_async(lambda n=number: len(accepted) == n + 1, what="accepted")
    plant.answer_held()
    finals = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [final.type for final in finals] == ["succeeded"] * len(finals), finals
    assert started[0] == holder.id  # it kept the bus to its end
    return started[1:]


async def test_commands_waiting_for_a_bus_go_higher_priority_first_then_as_they_came(
    plant: PlantSimulator, devices: DeviceSet, record: CommandRecord
) -> None:
    meters, level = _command("tank", 1), _command("tank", 5)
    more, inlet = _command("tank", 1), _command("pump", 9)
    started = await _run_behind_a_held_read(plant, devices, record, [meters, level, more, inlet])
    assert started == [inlet.id, level.id, meters.id, more.id]


async def test_a_stop_waiting_for_its_bus_goes_before_every_command_waiting(
    plant: PlantSimulator, devices: DeviceSet, record: CommandRecord
) -> None:
    level, stop = _command("tank", 9), _command("pump", 9, op="device.stop", reason="test")
    started = await _run_behind_a_held_read(plant, devices, record, [level, stop])
    assert started == [stop.id, level.id]


async def test_commands_waiting_for_a_worker_go_higher_priority_first_then_as_they_came(
    plant: PlantSimulator, devices: DeviceSet, record: CommandRecord
) -> None:
    """The agent's only worker is busy with the held read: noops (no device, no bus)
    wait for it."""
    low, mid, low_too, high = (
        _command("pump", priority).model_copy(update={"op": "noop", "device": None, "params": {}})
        for priority in (1, 5, 1, 9)
    )
    queued = [low, mid, low_too, high]
    started = await _run_behind_a_held_read(plant, devices, record, queued, workers=1)
    assert started == [high.id, mid.id, low.id, low_too.id]
