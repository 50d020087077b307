"""Fixtures of the SDK and CLI tests; the controller app fixtures (`app`, `test_client`,
`live_url`) come from tests/conftest.py."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def closed_port_url() -> str:
    """A URL nothing listens on: the port was free a moment ago and is closed again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
