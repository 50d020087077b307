"""Fixtures of the driver tests that cut a command off: a port whose connect hangs, an
agent's command record, and one command run through the agent's executor."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tme.agents.command_record import CommandRecord
from tme.agents.devices import Device, DeviceSet
from tme.agents.executor import CommandExecutor
from tme.protocol import Command, Event, utcnow

RunAlone = Callable[[Device, str, dict[str, Any], float], Awaitable[Event]]


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port on loopback that takes no more connections: a connect to it hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # fills the queue
            yield port


@pytest.fixture
def record(tmp_path: Path) -> Iterator[CommandRecord]:
    record = CommandRecord(tmp_path / "record.sqlite3")
    yield record
    record.close()


@pytest.fixture
def run_alone(record: CommandRecord) -> RunAlone:
    """`await run_alone(device, op, params, timeout_s)`: the command's final event, run
    through the executor as the agent runs it; the device's driver is stopped after."""

    async def run(device: Device, op: str, params: dict[str, Any], timeout_s: float) -> Event:
        devices = DeviceSet({device.name: device})
        executor = CommandExecutor(
            record, devices, lambda _e: None, worker_count=1, allow_shell=False
        )
        command = Command(
            task_id=1,
            site="s",
            agent="a",
            op=op,
            device=device.name,
            params=params,
            timeout_s=timeout_s,
            not_after=utcnow() + timedelta(minutes=1),
        )
        record.add(command)
        try:
            return await executor.execute(command)
        finally:
            await device.driver.stop()

    return run
