"""Ports for servers a test starts: a free one to bind, and whether one is answered."""

from __future__ import annotations

import socket

from tme.embedded_broker import free_port

__all__ = ["free_port", "listening"]


def listening(port: int, host: str = "127.0.0.1", timeout_s: float = 0.2) -> bool:
    """Whether a server accepts connections on `host`:`port` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
