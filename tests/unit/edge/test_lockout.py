"""A device locked out at its agent: whatever would change it is refused, reads run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_edge_checks import PUMP, command
from typer.testing import CliRunner
from waiting import wait_until_async

from tme.agents.checks import Plan, changes_device
from tme.agents.command_record import CommandRecord
from tme.agents.devices import Device, DeviceSet
from tme.agents.executor import CommandExecutor
from tme.agents.lockout import LOCKOUT_DIR, STOPPED_DIR, Lockouts
from tme.cli.main import app
from tme.drivers.profile import load_profile
from tme.protocol import Command, Event

INSTRUMENT = PUMP.parent / "instrument.yaml"


@pytest.fixture
def record(tmp_path: Path) -> Iterator[CommandRecord]:
    record = CommandRecord(tmp_path / "r.sqlite3")
    yield record
    record.close()


class _Pump:
    """A pump's bus that counts what reaches it; reads wait for `released`."""

    bus_key = "tcp:127.0.0.1:5030"

    def __init__(self) -> None:
        self.writes = self.reads = 0
        self.released = asyncio.Event()
        self.released.set()

    async def write_point(self, *_args: object) -> None:
        self.writes += 1

    async def read_points(self, profile: object, unit: int, points: list[str]) -> dict:
        self.reads += 1
        await self.released.wait()
        return dict.fromkeys(points, 100)


def _executor(
    record: CommandRecord, pump: _Pump, lockouts: Lockouts, published: list[Event] | None = None
) -> CommandExecutor:
    devices = DeviceSet({"pump1": Device("pump1", pump, 1, load_profile(PUMP))})
    sink = published.append if published is not None else (lambda _e: None)
    return CommandExecutor(
        record, devices, sink, worker_count=2, allow_shell=False, lockouts=lockouts
    )


async def _run(executor: CommandExecutor, record: CommandRecord, op: str, params: dict) -> Event:
    return await executor.execute(_recorded(record, op, params))


def _recorded(record: CommandRecord, op: str, params: dict) -> Command:
    cmd = command(op, device="pump1", params=params)
    record.add(cmd)
    return cmd


WRITE = {"point": "speed_setpoint", "value": 100}
READ = {"point": "speed_setpoint"}


async def test_a_locked_out_device_refuses_writes_and_still_reads(
    record: CommandRecord, tmp_path: Path
) -> None:
    pump, lockouts = _Pump(), Lockouts(tmp_path)
    executor = _executor(record, pump, lockouts)
    lockouts.lock("pump1", "alice", "seal replacement")
    refused = await _run(executor, record, "modbus.write", WRITE)
    assert refused.type == "rejected" and refused.not_started
    assert "locked out by alice" in refused.reason and "seal replacement" in refused.reason
    assert pump.writes == 0
    read = await _run(executor, record, "modbus.read", READ)
    assert read.type == "succeeded" and pump.reads == 1
    lockouts.unlock("pump1")
    assert (await _run(executor, record, "modbus.write", WRITE)).type == "succeeded"
    assert pump.writes == 1


async def test_a_lockout_set_while_a_write_waits_for_its_bus_refuses_it(
    record: CommandRecord, tmp_path: Path
) -> None:
    """Checked again holding the bus, just before the frame: a write accepted before the
    lockout, queued behind a slow read, never reaches the pump."""
    pump, lockouts, published = _Pump(), Lockouts(tmp_path), []
    executor = _executor(record, pump, lockouts, published)
    pump.released.clear()
    slow_read = asyncio.create_task(_run(executor, record, "modbus.read", READ))
    await wait_until_async(lambda: pump.reads == 1, what="the read holding the bus")
    queued = _recorded(record, "modbus.write", WRITE)
    write = asyncio.create_task(executor.execute(queued))
    await wait_until_async(
        lambda: any(e.type == "accepted" and e.command_id == queued.id for e in published),
        what="the write accepted, waiting for the bus",
    )
    lockouts.lock("pump1", "bob", "guard open")
    pump.released.set()
    refused, read = await write, await slow_read
    assert read.type == "succeeded"
    assert refused.type == "rejected" and refused.not_started and "guard open" in refused.reason
    assert pump.writes == 0


def test_what_a_lockout_refuses() -> None:
    pump = Device("pump1", _Pump(), 1, load_profile(PUMP))
    meter = Device("meter1", _Pump(), 1, load_profile(INSTRUMENT))

    def plan(op: str, device: Device, params: dict) -> Plan:
        return Plan(command(op, device=device.name, params=params), device)

    assert changes_device(plan("modbus.write", pump, WRITE))
    assert changes_device(plan("modbus.read", pump, READ)) is None
    assert changes_device(plan("serial.command", meter, {"command": "set_voltage"}))
    assert changes_device(plan("serial.command", meter, {"command": "identify"})) is None
    assert changes_device(Plan(command("noop"))) is None


def test_a_damaged_lockout_file_still_locks_the_device_out(tmp_path: Path) -> None:
    lockouts = Lockouts(tmp_path)
    (tmp_path / LOCKOUT_DIR).mkdir()
    (tmp_path / LOCKOUT_DIR / "pump1.json").write_text("{not json")
    lockout = lockouts.get("pump1")
    assert lockout is not None and "unreadable" in lockout.reason
    assert list(lockouts.all()) == ["pump1"]


def test_presence_says_which_devices_are_locked_out(tmp_path: Path) -> None:
    lockouts = Lockouts(tmp_path)
    devices = DeviceSet({"pump1": Device("pump1", _Pump(), 1, load_profile(PUMP))})
    assert "lockout" not in devices.describe(lockouts)[0]
    lockouts.lock("pump1", "alice", "seal  replacement\n")
    (described,) = devices.describe(lockouts)
    assert described["lockout"]["by"] == "alice"
    assert described["lockout"]["reason"] == "seal replacement"


def _agent_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "site: plant-x\nagent: skid-a\nmqtt: {url: 'mqtt://127.0.0.1:1883'}\n"
        "devices:\n  pump1:\n    driver: modbus_tcp\n"
        "    connection: {host: 127.0.0.1, port: 5020}\n"
        f"    unit: 1\n    profile: {PUMP}\n"
    )
    return path


def test_tme_agent_lock_unlock_and_lockouts(tmp_path: Path) -> None:
    config = str(_agent_yaml(tmp_path))
    runner = CliRunner()
    locked = runner.invoke(
        app,
        ["agent", "lock", "pump1", "--reason", "seal replacement", "--by", "alice", "-c", config],
    )
    assert locked.exit_code == 0, locked.output
    assert "pump1 locked out by alice" in locked.output
    assert Lockouts(tmp_path / "state").get("pump1") is not None  # the agent's state_dir
    listed = runner.invoke(app, ["agent", "lockouts", "-c", config])
    assert listed.exit_code == 0 and "seal replacement" in listed.output
    assert "Stopped" not in listed.output
    # a stop's latch (the agent's own, on link loss) is listed after the lockouts
    Lockouts(tmp_path / "state", STOPPED_DIR).lock("pump1", "agent a (link loss)", "no link")
    listed = runner.invoke(app, ["agent", "lockouts", "-c", config])
    assert "Stopped (changes refused until tme device resume)" in listed.output
    assert "agent a (link loss)" in listed.output
    unlocked = runner.invoke(app, ["agent", "unlock", "pump1", "-c", config])
    assert unlocked.exit_code == 0 and "pump1 unlocked" in unlocked.output
    assert Lockouts(tmp_path / "state").get("pump1") is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["pump9", "--reason", "x"], "has no device 'pump9'; its devices: pump1"),
        (["pump1", "--reason", "  "], "give --reason TEXT"),
    ],
)
def test_tme_agent_lock_refuses_what_it_cannot_lock(
    tmp_path: Path, args: list[str], said: str
) -> None:
    config = str(_agent_yaml(tmp_path))
    result = CliRunner().invoke(app, ["agent", "lock", *args, "-c", config])
    assert result.exit_code == 2
    assert said in result.output
    assert not (tmp_path / "state" / LOCKOUT_DIR).exists() or not any(
        (tmp_path / "state" / LOCKOUT_DIR).iterdir()
    )


def test_a_lockout_that_cannot_be_written_is_said_in_one_line(tmp_path: Path) -> None:
    config = str(_agent_yaml(tmp_path))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / LOCKOUT_DIR).write_text("a file where the directory goes")
    result = CliRunner().invoke(app, ["agent", "lock", "pump1", "--reason", "x", "-c", config])
    assert result.exit_code == 1
    assert "cannot change the lockout of 'pump1'" in result.output
    assert "Traceback" not in result.output


def test_a_lockout_left_by_a_device_no_longer_configured_can_be_ended(tmp_path: Path) -> None:
    """`tme agent lockouts` listed it, and `tme agent unlock` refused it ("agent has no
    device"): a device renamed or removed in the config kept its lockout for good (and
    handed it to any device given its name later)."""
    config = str(_agent_yaml(tmp_path))
    Lockouts(tmp_path / "state").lock("old-pump", "alice", "seal replacement")
    runner = CliRunner()
    assert "old-pump" in runner.invoke(app, ["agent", "lockouts", "-c", config]).output
    unlocked = runner.invoke(app, ["agent", "unlock", "old-pump", "-c", config])
    assert unlocked.exit_code == 0, unlocked.output
    assert "old-pump unlocked (locked out by alice" in unlocked.output
    assert Lockouts(tmp_path / "state").get("old-pump") is None
    unknown = runner.invoke(app, ["agent", "unlock", "pump9", "-c", config])
    assert unknown.exit_code == 2 and "has no device 'pump9'" in unknown.output


def test_tme_agent_lockouts_json_lists_lockouts_and_stops(tmp_path: Path) -> None:
    config = str(_agent_yaml(tmp_path))
    runner = CliRunner()
    empty = runner.invoke(app, ["agent", "lockouts", "--json", "-c", config])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == {"lockouts": [], "stopped": []}
    locked = Lockouts(tmp_path / "state").lock("pump1", "alice", "seal replacement")
    stopped = Lockouts(tmp_path / "state", STOPPED_DIR).lock("pump1", "bob", "leak")
    listed = runner.invoke(app, ["agent", "lockouts", "--json", "-c", config])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == {
        "lockouts": [
            {"device": "pump1", "by": "alice", "reason": "seal replacement", "at": locked.at}
        ],
        "stopped": [{"device": "pump1", "by": "bob", "reason": "leak", "at": stopped.at}],
    }
