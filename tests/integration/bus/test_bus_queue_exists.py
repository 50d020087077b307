"""`queue_exists`, on every transport: a passive check a gateway that declares nothing uses."""

from __future__ import annotations

from collections.abc import Callable

from tme.bus import Bus
from tme.protocol import site_queue

BusFactory = Callable[..., Bus]


def test_queue_exists_follows_declare_and_delete(make_bus: BusFactory, site: str) -> None:
    bus = make_bus()
    assert not bus.queue_exists(site_queue(site))
    bus.declare_site(site)
    assert bus.queue_exists(site_queue(site))
    bus.delete_queue(site_queue(site))
    assert not bus.queue_exists(site_queue(site))
    # the bus is still usable after the broker answered "no such queue"
    bus.declare_site(site)
    assert bus.queue_exists(site_queue(site))


def test_a_bus_that_declares_no_topology_still_sees_and_consumes_queues(
    make_bus: BusFactory, site: str
) -> None:
    controller = make_bus()
    controller.declare_site(site)
    gateway = make_bus(declare_topology=False)
    assert gateway.queue_exists(site_queue(site))
    gateway.consume_batch(site_queue(site), lambda deliveries: [None] * len(deliveries)).stop()
