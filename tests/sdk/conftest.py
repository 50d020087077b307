"""TEMPORARY local app fixtures until tests/conftest.py provides app/test_client/live_url."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def app(tmp_path: Any) -> Any:
    from tme.controller.app import create_app
    from tme.controller.store.db import make_engine, upgrade

    from tme.settings_models import Settings

    settings = Settings.model_validate({"database": {"url": f"sqlite:///{tmp_path}/tme.db"}})
    engine = make_engine(settings.database.url)
    upgrade(engine)
    yield create_app(settings, engine=engine)
    engine.dispose()


@pytest.fixture
def test_client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def live_url(app: Any) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    import time

    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def closed_port_url() -> str:
    """A URL nothing listens on: the port was free a moment ago and is closed again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
