"""Fixtures of the bus contract suite: one bus factory per transport, unique names, cleanup."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tme.bus import Bus, open_bus
from tme.bus.memory_broker import reset_memory_brokers
from tme.protocol import site_queue

BusFactory = Callable[..., Bus]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads leaked: {[t.name for t in leaked]}"


@pytest.fixture(
    params=["memory", pytest.param("amqp", marks=pytest.mark.external_service)],
)
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "amqp":
        yield request.getfixturevalue("rabbitmq_url")
    else:
        yield f"memory://test-{uuid.uuid4().hex}"
        reset_memory_brokers()


@pytest.fixture
def make_bus(bus_url: str) -> Iterator[BusFactory]:
    """Open and start buses on the test's broker; stop them and delete the test's queues after."""
    buses: list[Any] = []
    queues: set[str] = set()

    def factory(**options: Any) -> Bus:
        options.setdefault("confirm_timeout_s", 10)
        options.setdefault("connection_name", f"tme-test-{uuid.uuid4().hex[:8]}")
        bus = open_bus(bus_url, **options)
        bus.start()
        buses.append(_Tracking(bus, queues))
        bus_: Bus = buses[-1]
        return bus_

    yield factory
    for bus in buses:
        bus.stop()
    if queues:
        cleaner = open_bus(bus_url)
        cleaner.start()
        for queue in queues:
            cleaner.delete_queue(queue)
        cleaner.stop()


class _Tracking:
    """A bus that remembers the queues the test declared, for cleanup."""

    def __init__(self, bus: Bus, queues: set[str]) -> None:
        self._bus = bus
        self._queues = queues

    def declare_site(self, site: str) -> None:
        self._queues.add(site_queue(site))
        self._bus.declare_site(site)

    def declare_queue(self, queue: str, exchange: str, binding: str) -> None:
        self._queues.add(queue)
        self._bus.declare_queue(queue, exchange, binding)

    def declare_events_queue(
        self, queue: str = "tme.controller.events", binding: str = "#"
    ) -> None:
        self._queues.add(queue)
        self._bus.declare_events_queue(queue, binding)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@pytest.fixture
def site() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"
