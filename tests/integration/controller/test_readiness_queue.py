"""The readiness check asks the broker about the queue this controller consumes. It
declared the default queue (bound to every event) whatever the configured one was, so
a controller on its own queue left that one filling up unread with every event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from tme.bus import Bus, open_bus
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.config import Settings
from tme.controller.runtime import ControllerRuntime


@pytest.fixture
def bus(bus_url: str) -> Iterator[Bus]:
    bus = open_bus(bus_url, confirm_timeout_s=10)
    bus.start()
    yield bus
    bus.stop()


def test_readiness_declares_the_configured_queue_only(app_engine: Engine, bus: Bus) -> None:
    site = f"site-{uuid.uuid4().hex[:10]}"
    queue = f"tme.controller.events.{site}"
    settings = Settings.model_validate(
        {"broker": {"events_queue": queue, "events_binding": f"{site}.#"}}
    )
    default_existed = bus.queue_exists(CONTROLLER_EVENTS_QUEUE)
    runtime = ControllerRuntime(settings, app_engine, bus)
    try:
        runtime.check_bus()
        assert bus.queue_exists(queue)
        assert bus.queue_exists(CONTROLLER_EVENTS_QUEUE) == default_existed
    finally:
        bus.delete_queue(queue)
