"""`tme controller` (with its dashboard) whose start-up fails exits: with RabbitMQ
unreachable it logged "Application startup failed. Exiting." and then ran on for ever,
not serving, the dashboard's timer keeping the closing event loop alive."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ports import free_port
from python_module import run_module


def test_a_controller_whose_broker_cannot_be_reached_exits(fresh_sqlite, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fresh_sqlite(tmp_path / "tme.db").dispose()
    env = {
        **os.environ,
        "TME_DATABASE__URL": f"sqlite:///{tmp_path / 'tme.db'}",
        "TME_BROKER__URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",  # nothing there
        "TME_HTTP__PORT": str(free_port()),
        "TME_HTTP__HOST": "127.0.0.1",
    }
    try:
        done = run_module("tme.cli.main", "controller", env=env, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("tme controller did not exit after its start-up failed") from exc
    assert done.returncode != 0
    assert "RabbitMQ unreachable" in done.stdout + done.stderr
