"""The broker's side for tests: rabbitmqctl (list and close connections), and how
many messages a queue has ready and how many consumers."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pika
import pytest


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def require_rabbitmqctl() -> None:
    """Skip the test where rabbitmqctl is missing or cannot reach the broker."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    try:
        rabbitmqctl("list_connections", "pid")
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"rabbitmqctl cannot reach the broker: {exc}")


def connection_pids(prefix: str) -> set[str]:
    """Broker-side pids of the connections whose connection_name starts with `prefix`."""
    lines = rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    return {
        line.split("\t", 1)[0]
        for line in lines.splitlines()
        if f'{{"connection_name","{prefix}' in line
    }


def ready_messages(url: str, queue: str) -> int:
    """Messages of `queue` ready for a consumer (not the ones delivered, unacked)."""
    return int(_declared(url, queue).message_count)


def consumer_count(url: str, queue: str) -> int:
    """Consumers of `queue` now."""
    return int(_declared(url, queue).consumer_count)


def _declared(url: str, queue: str) -> Any:
    """What a passive declare of `queue` answers (its counts)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method
    finally:
        connection.close()
