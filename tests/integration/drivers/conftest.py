"""Fixtures of the driver tests that cut a command off: a port whose connect hangs, and
an agent's command record."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tme.agents.command_record import CommandRecord


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
