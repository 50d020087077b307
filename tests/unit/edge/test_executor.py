"""The executor answers every command it takes: a check that crashes is a rejection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_edge_checks import PUMP, command, devices
from waiting import wait_until_async

from tme.agents import executor as executor_module
from tme.agents.command_record import CommandRecord
from tme.agents.devices import Device, DeviceSet
from tme.agents.executor import CommandExecutor
from tme.drivers.profile import load_profile
from tme.errors import DriverError
from tme.protocol import Event


@pytest.fixture
def record(tmp_path: Path) -> Iterator[CommandRecord]:
    record = CommandRecord(tmp_path / "r.sqlite3")
    yield record
    record.close()


async def _execute(record: CommandRecord, cmd: object) -> tuple[Event, list[Event]]:
    published: list[Event] = []
    executor = CommandExecutor(
        record, devices(), published.append, worker_count=1, allow_shell=False
    )
    record.add(cmd)  # type: ignore[arg-type]
    final = await executor.execute(cmd)  # type: ignore[arg-type]
    return final, published


async def test_a_malformed_point_is_rejected_and_recorded(record: CommandRecord) -> None:
    cmd = command("modbus.write", device="pump1", params={"point": ["speed_setpoint"], "value": 1})
    final, published = await _execute(record, cmd)
    assert final.type == "rejected" and final.not_started and "point" in final.reason
    assert published == [final]
    entry = record.get(cmd.id)
    assert entry is not None and entry.stage == "final"


async def test_a_check_that_crashes_becomes_a_rejection(
    record: CommandRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever slips past the checks' own validation is answered, not left received
    (the gateway would offer it again every resend_after_s, to crash again)."""

    def crashing_check(*_args: object) -> None:
        raise KeyError("a bug in a check")

    monkeypatch.setattr(executor_module, "check_command", crashing_check)
    cmd = command("noop")
    final, published = await _execute(record, cmd)
    assert final.type == "rejected" and final.not_started
    assert "could not check" in final.reason and "a bug in a check" in final.reason
    assert published == [final]
    entry = record.get(cmd.id)
    assert entry is not None and entry.final_event == final


class _Bus:
    """A bus whose reads wait until `released` is set (a device that stopped answering)."""

    def __init__(self, bus_key: str, hangs: bool) -> None:
        self.bus_key = bus_key
        self.released = asyncio.Event()
        if not hangs:
            self.released.set()
        self.reads = 0

    async def read_points(self, profile: object, unit: int, points: list[str]) -> dict:
        self.reads += 1
        await self.released.wait()
        return dict.fromkeys(points, 0)


async def test_a_hung_bus_does_not_hold_the_workers_of_other_buses(
    record: CommandRecord,
) -> None:
    """Commands queued behind a hung device wait for its bus, not for a worker: the
    agent's other buses keep running (one at a time per bus, worker_count across buses)."""
    profile = load_profile(PUMP)
    stuck, healthy = _Bus("tcp:10.0.0.1:502", hangs=True), _Bus("tcp:10.0.0.2:502", hangs=False)
    devices = DeviceSet(
        {"a": Device("a", stuck, 1, profile), "b": Device("b", healthy, 1, profile)}
    )
    executor = CommandExecutor(record, devices, lambda _e: None, worker_count=2, allow_shell=False)
    read_a1, read_a2 = (
        command("modbus.read", device="a", params={"point": "speed_setpoint"}).model_copy(
            update={"timeout_s": 60}  # far beyond this test: bus a stays hung throughout
        )
        for _ in range(2)
    )
    read_b = command("modbus.read", device="b", params={"point": "speed_setpoint"})
    for cmd in (read_a1, read_a2, read_b):
        record.add(cmd)
    on_a = [asyncio.create_task(executor.execute(c)) for c in (read_a1, read_a2)]
    try:
        await wait_until_async(lambda: stuck.reads == 1, what="the hung read on bus a")
        final = await asyncio.wait_for(executor.execute(read_b), 2.0)
        assert final.type == "succeeded" and healthy.reads == 1
        assert stuck.reads == 1  # the second command on bus a still waits for its bus
    finally:
        stuck.released.set()
        results = await asyncio.gather(*on_a)
    assert [event.type for event in results] == ["succeeded", "succeeded"]


class _FailingBus:
    """A bus whose writes and reads raise the errors given (None: they work)."""

    bus_key = "tcp:127.0.0.1:5029"

    def __init__(self, write: DriverError | None, read: DriverError | None) -> None:
        self.write, self.read = write, read

    async def write_point(self, *_args: object) -> None:
        if self.write is not None:
            raise self.write

    async def read_points(self, profile: object, unit: int, points: list[str]) -> dict:
        if self.read is not None:
            raise self.read
        return dict.fromkeys(points, 100)


def _refused() -> DriverError:
    return DriverError("cannot connect to tcp:127.0.0.1:5029", retryable=True, not_sent=True)


async def _write_with(record: CommandRecord, bus: _FailingBus, verify: bool) -> Event:
    devices = DeviceSet({"pump1": Device("pump1", bus, 1, load_profile(PUMP))})
    executor = CommandExecutor(record, devices, lambda _e: None, worker_count=1, allow_shell=False)
    params = {"point": "speed_setpoint", "value": 100, "verify": verify}
    cmd = command("modbus.write", device="pump1", params=params)
    record.add(cmd)
    return await executor.execute(cmd)


async def test_a_write_whose_connection_could_not_be_opened_is_not_started(
    record: CommandRecord,
) -> None:
    """No frame left: the controller may retry the write, and the reason says why."""
    final = await _write_with(record, _FailingBus(write=_refused(), read=None), verify=False)
    assert final.type == "failed" and final.not_started
    assert final.reason == "cannot connect to tcp:127.0.0.1:5029; nothing was sent to the device"


async def test_a_write_whose_frame_may_have_gone_out_is_started(record: CommandRecord) -> None:
    lost = DriverError("write 'speed_setpoint' (unit 1): no answer in time", retryable=True)
    final = await _write_with(record, _FailingBus(write=lost, read=None), verify=False)
    assert final.type == "failed" and not final.not_started


async def test_a_write_whose_read_back_could_not_connect_is_started(
    record: CommandRecord,
) -> None:
    """The write went out before its read-back failed: the machine was touched."""
    final = await _write_with(record, _FailingBus(write=None, read=_refused()), verify=True)
    assert final.type == "failed" and not final.not_started
    assert "nothing was sent" not in final.reason


async def test_each_operation_tells_whether_its_device_answered(record: CommandRecord) -> None:
    """A device that answered (a Modbus exception included) is `ok`, one that did not
    (no connection, no answer) `down` with the error that began it, since when it changed."""
    bus = _FailingBus(write=None, read=None)
    devices = DeviceSet({"pump1": Device("pump1", bus, 1, load_profile(PUMP))})
    executor = CommandExecutor(record, devices, lambda _e: None, worker_count=1, allow_shell=False)

    async def write() -> Event:
        cmd = command(
            "modbus.write", device="pump1", params={"point": "speed_setpoint", "value": 1}
        )
        record.add(cmd)
        return await executor.execute(cmd)

    assert "link" not in devices.describe()[0]  # no operation yet: not known
    assert (await write()).type == "succeeded"
    ok = devices.links["pump1"]
    assert ok.state == "ok" and devices.describe()[0]["link"]["state"] == "ok"
    bus.write = DriverError("write: device answered Modbus exception 4", modbus_exception=4)
    assert (await write()).type == "failed"
    assert devices.links["pump1"] is ok  # it answered: still ok, since the same time
    bus.write = _refused()
    assert (await write()).type == "failed"
    down = devices.links["pump1"]
    assert down.state == "down" and "cannot connect" in down.error
    bus.write = DriverError("write 'speed_setpoint' (unit 1): no answer in time", retryable=True)
    assert (await write()).type == "failed"
    assert devices.links["pump1"] is down  # still down: the error that began it is kept
    bus.write = None
    assert (await write()).type == "succeeded"
    assert devices.links["pump1"].state == "ok"


class _SlowToStart:
    """A driver whose start waits until `let_go` is set (a device slow to connect)."""

    def __init__(self, bus_key: str, let_go: asyncio.Event) -> None:
        self.bus_key = bus_key
        self.let_go = let_go
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.started.set()
        await self.let_go.wait()

    async def stop(self) -> None:
        pass


async def test_the_agents_buses_start_together_not_one_after_another() -> None:
    """A device slow to connect does not hold the others' start (nor the agent's start
    and its presence) for its whole connect timeout: here the first bus starts only
    once the second has begun starting, which one after another would never reach."""
    second_began = asyncio.Event()
    first = _SlowToStart("tcp:10.0.0.1:502", second_began)
    second = _SlowToStart("tcp:10.0.0.2:502", asyncio.Event())
    second.let_go.set()
    second.started = second_began  # its start is what lets the first one go
    profile = load_profile(PUMP)
    devices = DeviceSet({"a": Device("a", first, 1, profile), "b": Device("b", second, 1, profile)})
    await asyncio.wait_for(devices.start(), 5.0)
    assert first.started.is_set() and second_began.is_set()
