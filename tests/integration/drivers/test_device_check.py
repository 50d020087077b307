"""A check (op device.check, a dry run) against the simulated plant, through the agent's
executor: it answers what the command it names would do now (its envelope, the device's
lockout or stop, what its interlocks and step limit read), and no frame changes the
machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_interlocks import PUMP, SPEED, plant_devices, pump_at_400, run, set_level

from tme.agents.command_record import CommandRecord
from tme.agents.lockout import STOPPED_DIR, Lockouts
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["test_interlocks"]  # its plant and pump_profile fixtures

WRITE_800 = {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": 800}}


def writes(plant: PlantSimulator) -> int:
    return plant.request_count(PUMP, writes_only=True)


async def check(devices: Any, record: CommandRecord, params: dict[str, Any]) -> Any:
    final, _sent = await run(devices, record, "pump", "device.check", params)
    return final


async def test_a_write_the_pump_would_take_is_said_and_not_written(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    devices = pump_at_400(plant, pump_profile, level=41.5)
    final = await check(devices, record, WRITE_800)
    assert final.type == "succeeded", final.reason
    assert final.result == {
        "would": "write speed_setpoint = 800 rpm to pump",
        "op": "modbus.write",
    }
    assert final.reason == (
        "would write speed_setpoint = 800 rpm to pump; nothing was written or sent (a check)"
    )
    assert "interlock tank.level below 95: 41.5 (holds)" in (final.line or "")
    assert writes(plant) == 0
    assert plant.read_register(PUMP, SPEED) == 400


async def test_a_write_an_interlock_or_the_step_limit_would_refuse_is_said_with_what_was_read(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord
) -> None:
    devices = pump_at_400(plant, pump_profile, level=97.2)
    final = await check(devices, record, WRITE_800)
    assert final.type == "rejected"
    assert (final.reason or "").startswith("would be refused: interlock: tank.level is 97.2 %")
    set_level(plant, 41.5)
    step = await check(
        devices,
        record,
        {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": 1500}},
    )
    assert step.type == "rejected"
    assert "would be refused:" in (step.reason or "") and "600" in (step.reason or "")
    assert writes(plant) == 0


async def test_what_the_envelope_would_refuse_is_said_and_a_check_of_a_stop_latches_nothing(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord, tmp_path: Path
) -> None:
    devices = plant_devices(plant, pump_profile)
    too_fast = {"op": "modbus.write", "params": {"point": "speed_setpoint", "value": 9000}}
    final = await check(devices, record, too_fast)
    assert final.type == "rejected"
    assert (final.reason or "").startswith("would be refused: ")
    assert "9000" in (final.reason or "")

    stop = await check(devices, record, {"op": "device.stop", "params": {"reason": "drill"}})
    assert stop.type == "succeeded", stop.reason
    assert stop.result["would"] == (  # type: ignore[index]
        "stop pump: write run = False, speed_setpoint = 0 (its safe values)"
    )
    assert writes(plant) == 0

    nested = await check(devices, record, {"op": "device.check", "params": WRITE_800})
    assert nested.type == "rejected"
    assert "device.check checks a device op" in (nested.reason or "")


async def test_a_check_on_a_stopped_pump_says_its_write_would_be_refused(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord, tmp_path: Path
) -> None:
    from tme.agents.executor import CommandExecutor

    devices = plant_devices(plant, pump_profile)
    stops = Lockouts(tmp_path / "state", STOPPED_DIR)
    stops.lock("pump", "alice", "leak at the seal")
    sent: list[Any] = []
    executor = CommandExecutor(
        record, devices, sent.append, worker_count=2, allow_shell=False, stops=stops
    )
    from datetime import timedelta

    from tme.protocol import Command, utcnow

    command = Command(
        task_id=1, site="s", agent="a", op="device.check", device="pump", params=WRITE_800,
        timeout_s=5, not_after=utcnow() + timedelta(minutes=1),
    )  # fmt: skip
    record.add(command)
    final = await executor.execute(command)
    assert final is not None and final.type == "rejected"
    assert (final.reason or "").startswith(
        "would be refused: device 'pump' was stopped by alice at "
    )
    assert writes(plant) == 0
