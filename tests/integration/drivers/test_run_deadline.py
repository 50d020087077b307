"""A run's total deadline reaches its agent with the command: an operation still going
at the deadline is cut off there, as at its timeout, not left running past the moment
the controller timed the run out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_interlocks import PUMP, SPEED, plant_devices

from tme.agents.command_record import CommandRecord
from tme.agents.executor import CommandExecutor
from tme.protocol import Command, utcnow
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["test_interlocks"]  # its plant and pump_profile fixtures


async def read_speed(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord, deadline_in_s: float
) -> Command:
    devices = plant_devices(plant, pump_profile)
    command = Command(
        task_id=1,
        site="s",
        agent="a",
        op="modbus.read",
        device="pump",
        params={"point": "speed_setpoint"},
        timeout_s=30,
        not_after=utcnow() + timedelta(minutes=1),
        deadline=utcnow() + timedelta(seconds=deadline_in_s),
    )
    record.add(command)
    executor = CommandExecutor(record, devices, lambda _e: None, worker_count=1, allow_shell=False)
    await devices.start()
    try:
        return await executor.execute(command)  # type: ignore[return-value]
    finally:
        await devices.stop()


async def test_an_operation_going_on_at_the_runs_deadline_is_cut_off_there(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    plant.write_register(PUMP, SPEED, 400)
    plant.inject_fault(unit=PUMP, table="holding_register", delay_s=20, remaining=1)
    final = await read_speed(plant, pump_profile, record, deadline_in_s=0.5)
    assert final.type == "timed_out"
    assert (final.reason or "").startswith("no result by the run's deadline (")
    assert final.reason.endswith("; operation cancelled")  # type: ignore[union-attr]


async def test_a_deadline_after_the_timeout_leaves_the_timeout_in_charge(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    plant.write_register(PUMP, SPEED, 400)
    final = await read_speed(plant, pump_profile, record, deadline_in_s=3600)
    assert final.type == "succeeded", final.reason
    assert final.result["values"]["speed_setpoint"]["value"] == 400  # type: ignore[index]
