"""A gateway that declares nothing waits for its site's queue, then consumes it (memory bus)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from waiting import wait_until

from tme.agents.site_queue import SiteQueueConsumer
from tme.bus import Bus, Delivery, Reject, open_bus
from tme.bus.memory import MemoryBus
from tme.bus.memory_broker import reset_memory_brokers
from tme.protocol import DISPATCH_EXCHANGE, site_queue, site_routing_key


@pytest.fixture
def url() -> Iterator[str]:
    yield f"memory://site-queue-{uuid.uuid4().hex[:8]}"
    reset_memory_brokers()


class Received:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.cond = threading.Condition()

    def __call__(self, deliveries: list[Delivery]) -> list[Reject | None]:
        with self.cond:
            self.bodies.extend(d.body for d in deliveries)
            self.cond.notify_all()
        return [None] * len(deliveries)


def test_a_bus_that_declares_no_topology_declares_nothing(url: str) -> None:
    bus = open_bus(url, declare_topology=False)
    bus.start()
    assert isinstance(bus, MemoryBus)
    assert bus.broker.exchanges == set() and bus.broker.queues == {}
    bus.stop()


def test_waits_for_the_queue_then_consumes_it(url: str) -> None:
    gateway_bus: Bus = open_bus(url, declare_topology=False)
    gateway_bus.start()
    controller_bus = open_bus(url)  # declares the topology and the queue, later
    received = Received()
    told = threading.Event()  # the gateway's heartbeat tells the controller at once
    waiter = SiteQueueConsumer(gateway_bus, site_queue("plant-1"), received, told.set)
    waiter.start()
    try:
        wait_until(lambda: waiter.attempts >= 2, what="a second check")
        assert not waiter.consuming.is_set() and not told.is_set()

        controller_bus.start()
        controller_bus.declare_site("plant-1")
        assert waiter.consuming.wait(10)
        assert told.wait(10)
        controller_bus.publish(DISPATCH_EXCHANGE, site_routing_key("plant-1"), b"command")
        with received.cond:
            assert received.cond.wait_for(lambda: received.bodies == [b"command"], 10)
    finally:
        waiter.stop()
        gateway_bus.stop()
        controller_bus.stop()


def test_stops_promptly_while_waiting(url: str) -> None:
    bus = open_bus(url, declare_topology=False)
    bus.start()
    waiter = SiteQueueConsumer(bus, site_queue("nowhere"), Received())
    waiter.start()
    wait_until(lambda: waiter.attempts >= 1, what="a first check")
    stopped = threading.Thread(target=waiter.stop)
    stopped.start()
    stopped.join(5)  # within its backoff pause
    assert not stopped.is_alive() and not waiter.consuming.is_set()
    bus.stop()
