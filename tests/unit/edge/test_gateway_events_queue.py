"""A gateway declares the controller's events queue it is configured with (so events
wait for a controller not started yet), not the default one: a queue no controller
reads would fill up with every event of every site."""

from __future__ import annotations

import uuid
from pathlib import Path

from tme.agents.gateway import Gateway, GatewayConfig
from tme.bus import open_bus
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE


def test_the_configured_events_queue_is_declared_not_the_default(tmp_path: Path) -> None:
    bus = open_bus(f"memory://gw-{uuid.uuid4().hex[:8]}")
    config = GatewayConfig(
        site="plant-7",
        bus_url="memory://",
        mqtt_url="mqtt://127.0.0.1:9",  # nothing listens there; MQTT is not needed here
        state_dir=tmp_path,
        events_queue="tme.controller.events.plant-7",
        events_binding="plant-7.#",
    )
    gateway = Gateway(config, bus=bus)
    gateway.start()
    try:
        assert bus.queue_exists("tme.controller.events.plant-7")
        assert not bus.queue_exists(CONTROLLER_EVENTS_QUEUE)
    finally:
        gateway.stop()


def test_by_default_the_controllers_default_queue_is_declared(tmp_path: Path) -> None:
    bus = open_bus(f"memory://gw-{uuid.uuid4().hex[:8]}")
    config = GatewayConfig(
        site="plant-7", bus_url="memory://", mqtt_url="mqtt://127.0.0.1:9", state_dir=tmp_path
    )
    gateway = Gateway(config, bus=bus)
    gateway.start()
    try:
        assert bus.queue_exists(CONTROLLER_EVENTS_QUEUE)
    finally:
        gateway.stop()
