"""The executor answers every command it takes: a check that crashes is a rejection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_edge_checks import command, devices

from tme.agents import executor as executor_module
from tme.agents.command_record import CommandRecord
from tme.agents.executor import CommandExecutor
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
