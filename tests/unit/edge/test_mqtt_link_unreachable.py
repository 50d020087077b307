"""An MQTT link whose broker cannot be reached says so: an agent or gateway given a wrong
port logged "started" and then nothing at all while paho retried in silence."""

from __future__ import annotations

import logging
import uuid

import pytest
from ports import free_port
from waiting import wait_until

from tme import mqtt
from tme.mqtt import MqttLink


def test_a_broker_that_cannot_be_reached_is_logged_naming_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=mqtt.__name__)
    port = free_port()  # nothing listens there
    link = MqttLink(f"mqtt://127.0.0.1:{port}", f"tme-test-unreachable-{uuid.uuid4().hex[:8]}")
    link.start()
    try:

        def logged() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.name == mqtt.__name__ and f"127.0.0.1:{port}" in r.getMessage()
            ]

        lines = wait_until(logged, timeout=10, what="the failed connection logged")
        first = lines[0]  # type: ignore[index]
        assert f"connecting to 127.0.0.1:{port} failed" in first and "retrying" in first, lines
        assert not link.is_connected()
    finally:
        link.stop()
