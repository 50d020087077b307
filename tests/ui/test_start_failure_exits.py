"""A controller with its dashboard whose start-up fails exits: with RabbitMQ unreachable
it logged "Application startup failed. Exiting." and then ran on for ever, not serving,
the dashboard's timer keeping the closing event loop alive. (`tme controller` checks the
broker before it starts the app; this starts the app as `serve_controller` does, so that
the failure happens in its start-up.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ports import free_port

SERVE = """
from tme.cli.serve import serve_controller
from tme.config import load_settings
from tme.controller.app import create_app

settings = load_settings()
serve_controller(settings, app=create_app(settings, dashboard=True))
"""


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
        done = subprocess.run(
            [sys.executable, "-c", SERVE],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the controller did not exit after its start-up failed") from exc
    assert done.returncode != 0
    assert "RabbitMQ unreachable" in done.stdout + done.stderr
