"""A point's min_interval_s (anti-short-cycle), through the agent's executor against the
simulated plant: a change too soon after the last is rejected and sends no frame."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from clocks import Clocks

from tme.agents.agent_config import DeviceConfig
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet, build_devices
from tme.agents.executor import CommandExecutor
from tme.agents.pacing import PointChanges
from tme.protocol import Command, Event, utcnow
from tme.simulators.modbus_plant import PlantSimulator

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP, RUN = 1, 0  # the plant's pump unit and its run coil
START, STOP = {"point": "run", "value": True}, {"point": "run", "value": False}


@pytest.fixture
def plant() -> Iterator[PlantSimulator]:
    with PlantSimulator.run_in_thread(tick_s=None) as sim:  # values stay as set
        yield sim


@pytest.fixture
def pump_profile(tmp_path: Path) -> Path:
    """The shipped pump profile, its run coil changed at most once every 300 s."""
    data = yaml.safe_load((PROFILES / "pump.yaml").read_text())
    data["points"]["run"]["min_interval_s"] = 300
    path = tmp_path / "pump.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def changes(tmp_path: Path, clocks: Clocks) -> Iterator[PointChanges]:
    changes = PointChanges(tmp_path / "state" / "changes.sqlite3", clocks.clock())
    yield changes
    changes.close()


def pump(sim: PlantSimulator, pump_profile: Path, port: int | None = None) -> DeviceSet:
    connection = {"host": "127.0.0.1", "port": port or sim.port, "timeout_s": 1.0}
    return build_devices({"pump": DeviceConfig("modbus_tcp", connection, PUMP, pump_profile)})


async def run(
    devices: DeviceSet,
    record: CommandRecord,
    changes: PointChanges,
    op: str,
    params: dict[str, Any] | None = None,
) -> tuple[Event, list[Event]]:
    """The command's final event and every event it sent, run as the agent runs it."""
    sent: list[Event] = []
    executor = CommandExecutor(
        record, devices, sent.append, worker_count=1, allow_shell=False, changes=changes
    )
    command = Command(
        task_id=1, site="s", agent="a", op=op, device="pump", params=params or {},
        timeout_s=5, not_after=utcnow() + timedelta(minutes=1),
    )  # fmt: skip
    record.add(command)
    await devices.start()
    try:
        final = await executor.execute(command)
    finally:
        await devices.stop()
    assert final is not None
    return final, sent


def writes(sim: PlantSimulator) -> int:
    return sim.request_count(PUMP, writes_only=True)


async def test_a_start_within_the_interval_of_the_last_change_is_rejected_unsent(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
    clocks: Clocks,
) -> None:
    devices = pump(plant, pump_profile)
    started, _ = await run(devices, record, changes, "modbus.write", START)
    assert started.type == "succeeded", started.reason
    clocks.advance(20)
    stopped, _ = await run(devices, record, changes, "modbus.write", STOP)
    assert stopped.type == "succeeded", stopped.reason  # its safe value: never held back
    assert plant.read_bit(PUMP, RUN) is False
    clocks.advance(42)
    before = writes(plant)

    again, sent = await run(devices, record, changes, "modbus.write", START)
    assert again.type == "rejected"
    assert again.not_started is True
    assert again.reason == (
        "point 'run' was last changed 42 s ago; its min_interval_s is 300"
        " (next change allowed in 258 s); nothing was written"
    )
    assert [e.type for e in sent] == ["accepted", "rejected"]
    assert writes(plant) == before
    assert plant.read_bit(PUMP, RUN) is False


async def test_a_change_is_allowed_once_the_interval_has_passed(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
    clocks: Clocks,
) -> None:
    devices = pump(plant, pump_profile)
    assert (await run(devices, record, changes, "modbus.write", STOP))[0].type == "succeeded"
    clocks.advance(299.9)
    early, _ = await run(devices, record, changes, "modbus.write", START)
    assert early.type == "rejected"
    assert "next change allowed in 0.1 s" in (early.reason or "")
    clocks.advance(0.1)
    on_time, _ = await run(devices, record, changes, "modbus.write", START)
    assert on_time.type == "succeeded", on_time.reason
    assert plant.read_bit(PUMP, RUN) is True
    assert "run last changed 300.0 s ago (min_interval_s 300)" in (on_time.line or "")


async def test_writing_the_value_the_point_holds_is_no_change(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
    clocks: Clocks,
) -> None:
    """Asked again to run a pump that runs: no start, so neither refused nor counted."""
    devices = pump(plant, pump_profile)
    assert (await run(devices, record, changes, "modbus.write", START))[0].type == "succeeded"
    clocks.advance(200)
    same, _ = await run(devices, record, changes, "modbus.write", START)
    assert same.type == "succeeded", same.reason
    assert "run holds True already: no change" in (same.line or "")
    plant.write_bit(PUMP, RUN, False)  # stopped at the machine's own panel
    clocks.advance(100)  # 300 s after the start; 100 s after the write of the same value
    restart, _ = await run(devices, record, changes, "modbus.write", START)
    assert restart.type == "succeeded", restart.reason
    assert plant.read_bit(PUMP, RUN) is True


async def test_a_stop_always_runs_and_counts_as_a_change(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
    clocks: Clocks,
) -> None:
    devices = pump(plant, pump_profile)
    assert (await run(devices, record, changes, "modbus.write", START))[0].type == "succeeded"
    clocks.advance(1)
    stop, _ = await run(devices, record, changes, "device.stop")
    assert stop.type == "succeeded", stop.reason
    assert plant.read_bit(PUMP, RUN) is False
    clocks.advance(2.5)
    again, _ = await run(devices, record, changes, "modbus.write", START)
    assert again.type == "rejected"
    assert "point 'run' was last changed 2.5 s ago" in (again.reason or "")
    assert plant.read_bit(PUMP, RUN) is False


async def test_a_restarted_agent_does_not_start_again_a_pump_it_just_stopped(
    plant: PlantSimulator, pump_profile: Path, record: CommandRecord, tmp_path: Path
) -> None:
    clocks = Clocks()
    path = tmp_path / "state" / "changes.sqlite3"
    devices = pump(plant, pump_profile)
    before_restart = PointChanges(path, clocks.clock())
    assert (await run(devices, record, before_restart, "modbus.write", START))[0].type == (
        "succeeded"
    )
    assert (await run(devices, record, before_restart, "modbus.write", STOP))[0].type == (
        "succeeded"
    )
    before_restart.close()  # the agent dies
    clocks.advance(1)
    after_restart = PointChanges(path, clocks.clock())
    try:
        again, _ = await run(devices, record, after_restart, "modbus.write", START)
    finally:
        after_restart.close()
    assert again.type == "rejected"
    assert "point 'run' was last changed 1.0 s ago" in (again.reason or "")
    assert plant.read_bit(PUMP, RUN) is False


async def test_a_stop_that_sent_nothing_is_no_change(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
) -> None:
    """Its connection could not be opened: the pump did not change, so the next start
    is not held back by it."""
    with socket.socket() as closed:  # a port nothing listens on: connecting is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    devices = pump(plant, pump_profile, port=port)
    stop, _ = await run(devices, record, changes, "device.stop")
    assert stop.type == "failed"
    assert stop.not_started is True, stop.reason
    assert changes.since_s("pump", "run") is None


async def test_a_check_says_a_start_would_be_refused_and_counts_nothing(
    plant: PlantSimulator,
    pump_profile: Path,
    record: CommandRecord,
    changes: PointChanges,
    clocks: Clocks,
) -> None:
    devices = pump(plant, pump_profile)
    assert (await run(devices, record, changes, "modbus.write", STOP))[0].type == "succeeded"
    clocks.advance(10)
    check = {"op": "modbus.write", "params": START}
    checked, _ = await run(devices, record, changes, "device.check", check)
    assert checked.type == "rejected"
    assert (checked.reason or "").startswith(
        "would be refused: point 'run' was last changed 10 s ago"
    )
    assert changes.since_s("pump", "run") == 10
