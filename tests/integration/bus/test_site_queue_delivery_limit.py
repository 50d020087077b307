"""A site queue's delivery limit against a gateway's link trouble, on the real RabbitMQ.

RabbitMQ (3.10 here) counts a delivery that its consumer's connection took down with it
towards the queue's delivery limit. A gateway holding commands it has not journaled
yet (its journal stalled, its host frozen) while its link drops again and again must
not see them dead-lettered: that says nothing about the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
import pytest
from bus_recorder import Recorder

from tme.bus import Bus
from tme.protocol import DEAD_LETTER_EXCHANGE, DISPATCH_EXCHANGE, site_queue, site_routing_key

pytestmark = pytest.mark.external_service

DROPS = 6  # one more than the delivery limit site queues had (5), which dead-lettered it
PREFETCH = 200  # a gateway's prefetch (broker.prefetch) may be as large


@pytest.fixture
def bus_url(rabbitmq_url: str) -> str:
    """The broker's own counting is under test: RabbitMQ only."""
    return rabbitmq_url


@contextmanager
def consumer_connection(url: str) -> Iterator[Any]:
    """A consumer's connection; leaving closes it with whatever it holds unacked."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        yield channel
    finally:
        connection.close()


def take(channel: Any, queue: str) -> tuple[Any, Any]:
    """The next delivery of `queue` (its method and properties), within 10 s."""
    for method, properties, _body in channel.consume(queue, inactivity_timeout=10):
        assert method is not None, f"nothing delivered from {queue} within 10 s"
        return method, properties
    raise AssertionError("unreachable")


def test_a_command_outlives_its_gateways_connection_closing_on_it_again_and_again(
    make_bus: Callable[..., Bus], rabbitmq_url: str, site: str
) -> None:
    """The command is handed to a consumer that closes its connection without acking it
    (a gateway whose journal hangs while its link drops), DROPS times over. The broker
    counts each return, but the site queue's limit is far past that: the command comes
    again, and is acked the next time; nothing is dead-lettered."""
    bus = make_bus()
    bus.declare_site(site)
    dead = Recorder()
    tap = f"tme.test.dead.{site}"
    bus.declare_queue(tap, DEAD_LETTER_EXCHANGE, site_routing_key(site))
    bus.consume(tap, dead)
    bus.publish(DISPATCH_EXCHANGE, site_routing_key(site), b"{}", message_id="cmd-1")

    for _ in range(DROPS):
        with consumer_connection(rabbitmq_url) as channel:
            take(channel, site_queue(site))  # held, never acked: the connection closes on it
    with consumer_connection(rabbitmq_url) as channel:
        method, properties = take(channel, site_queue(site))
        channel.basic_ack(method.delivery_tag)
        assert (properties.message_id, method.redelivered) == ("cmd-1", True)
        assert (properties.headers or {}).get("x-delivery-count") == DROPS
    assert dead.ids() == []
