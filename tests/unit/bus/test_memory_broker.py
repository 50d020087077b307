"""memory:// specifics: brokers shared by URL, reset for tests, redeclare checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tme.bus import open_bus
from tme.bus.memory import MemoryBus
from tme.bus.memory_broker import broker_for, reset_memory_brokers
from tme.bus.topology import SITE_DELIVERY_LIMIT
from tme.errors import BusError
from tme.protocol import (
    DEAD_LETTER_EXCHANGE,
    DISPATCH_EXCHANGE,
    EVENTS_EXCHANGE,
    site_queue,
    site_routing_key,
)


@pytest.fixture(autouse=True)
def fresh_brokers() -> Iterator[None]:
    reset_memory_brokers()
    yield
    reset_memory_brokers()


def test_same_url_shares_one_broker_and_names_separate_them() -> None:
    assert broker_for("memory://plant") is broker_for("memory://plant")
    assert broker_for("memory://plant") is not broker_for("memory://other")
    assert broker_for("memory://") is broker_for("memory:///")


def test_controller_and_gateway_in_one_process_see_each_other() -> None:
    controller, gateway = open_bus("memory://demo"), open_bus("memory://demo")
    controller.start()
    gateway.start()
    gateway.declare_site("plant-1")
    controller.publish(DISPATCH_EXCHANGE, site_routing_key("plant-1"), b"{}", message_id="c")
    assert broker_for("memory://demo").queues[site_queue("plant-1")].messages[0].message_id == "c"


def test_reset_forgets_queues_and_messages() -> None:
    bus = open_bus("memory://")
    bus.start()
    bus.declare_site("s")
    bus.publish(DISPATCH_EXCHANGE, site_routing_key("s"), b"{}")
    reset_memory_brokers()
    again = open_bus("memory://")
    again.start()
    assert site_queue("s") not in broker_for("memory://").queues


def test_redeclare_with_other_arguments_is_refused() -> None:
    first = open_bus("memory://")
    first.start()
    first.declare_queue("q", DEAD_LETTER_EXCHANGE, "#")  # no delivery limit, no dead letters
    with pytest.raises(BusError, match="different arguments"):
        first.declare_queue("q", EVENTS_EXCHANGE, "#")


def test_redeclare_with_another_delivery_limit_keeps_the_queues_own() -> None:
    """As on RabbitMQ: a site queue declared with an older limit is used as it is."""
    first = open_bus("memory://", delivery_limit=5)
    first.start()
    first.declare_queue(site_queue("s"), EVENTS_EXCHANGE, "old")  # as older TME declared it
    first.declare_site("s")
    assert broker_for("memory://").queues[site_queue("s")].delivery_limit == 5
    first.declare_site("t")
    assert broker_for("memory://").queues[site_queue("t")].delivery_limit == SITE_DELIVERY_LIMIT


def test_unstarted_memory_bus_refuses_work() -> None:
    bus = open_bus("memory://")
    assert isinstance(bus, MemoryBus)
    with pytest.raises(BusError, match="not started"):
        bus.publish(DISPATCH_EXCHANGE, "site.s", b"{}")
