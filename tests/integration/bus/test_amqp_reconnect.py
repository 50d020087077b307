"""RabbitMQ drops the bus's connections mid-traffic; publisher and consumer recover, nothing
confirmed is lost. Connections are closed from the broker side with rabbitmqctl. And the
links survive what once stopped them for good: a long outage, a consumer cancelled by the
broker, an error in a callback."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from bus_recorder import Recorder
from rabbitmq_admin import connection_pids, require_rabbitmqctl
from rabbitmq_admin import rabbitmqctl as rabbitmq_ctl
from tcp_relay import TcpRelay
from waiting import wait_until

from tme.bus import Bus
from tme.bus.amqp_admin import connection_parameters
from tme.bus.amqp_link import AmqpLink
from tme.bus.amqp_publisher import ConfirmingPublisher
from tme.bus.options import BusOptions
from tme.protocol import DISPATCH_EXCHANGE, site_queue, site_routing_key
from tme.settings_models import LoggingSettings

pytestmark = pytest.mark.external_service


@pytest.fixture
def bus_url(rabbitmq_url: str) -> str:
    """Only RabbitMQ has connections to drop (overrides the contract suite's transports)."""
    return rabbitmq_url


@pytest.fixture
def rabbitmqctl(rabbitmq_url: str) -> None:
    require_rabbitmqctl()


def test_publisher_and_consumer_recover_and_keep_every_confirmed_message(
    rabbitmqctl: None, make_bus: Callable[..., Bus], site: str
) -> None:
    name = f"tme-reconnect-{uuid.uuid4().hex[:8]}"
    bus = make_bus(connection_name=name, reconnect_min_s=0.1, reconnect_max_s=1.0)
    bus.declare_site(site)
    got = Recorder()
    bus.consume(site_queue(site), got)
    confirmed: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def keep_publishing() -> None:
        batch_no = 0
        while not stop.is_set():
            ids = [f"{batch_no}-{i}" for i in range(50)]
            batch = [(site_routing_key(site), b"{}", mid) for mid in ids]
            for mid, error in zip(ids, bus.publish_many(DISPATCH_EXCHANGE, batch), strict=True):
                (failed if error else confirmed).append(mid)
            batch_no += 1

    publisher = threading.Thread(target=keep_publishing, name="test-publisher")
    publisher.start()
    try:
        got.wait_for(lambda ds: len(ds) >= 500, timeout=20)
        before = connection_pids(name)
        assert len(before) == 2, f"expected publisher and consumer connections, got {before}"
        for pid in before:
            rabbitmq_ctl("close_connection", pid, "TME reconnect test")
        after_close = len(confirmed)

        # Both links come back on new connections and traffic flows again.
        got.wait_for(lambda ds: len(confirmed) >= after_close + 500, timeout=30)
        reopened = connection_pids(name)
        assert len(reopened) == 2 and not reopened & before
    finally:
        stop.set()
        publisher.join(30)

    got.wait_for_ids(set(confirmed), timeout=30)
    assert not failed, f"{len(failed)} publishes failed instead of being retried"


def test_a_link_outlives_a_long_outage_and_connects_when_the_broker_is_back(
    rabbitmq_url: str,
) -> None:
    """Over a thousand failed attempts (hours of outage at the default backoff) once
    overflowed the backoff and killed the I/O thread for good."""
    target = urlsplit(rabbitmq_url)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5672))
    url = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{relay.port}")
    )
    options = BusOptions(reconnect_min_s=0.001, reconnect_max_s=0.001)
    channels: list[object] = []
    parameters = connection_parameters(url, options, "outage")
    link = AmqpLink(parameters, "outage", options, channels.append, lambda _error: None)
    link.start()
    try:
        wait_until(lambda: link.failures > 1100, timeout=30, what="over 1100 failed attempts")
        relay.open()  # the broker is back
        wait_until(lambda: channels, timeout=10, what="a channel once the broker is back")
        assert link.opened == 1
    finally:
        link.stop()
        relay.close()


def test_a_consumer_whose_queue_is_deleted_consumes_again_once_it_is_back(
    make_bus: Callable[..., Bus], site: str
) -> None:
    bus = make_bus(reconnect_min_s=0.05, reconnect_max_s=0.5)
    bus.declare_site(site)
    got = Recorder()
    consumer = bus.consume(site_queue(site), got)
    bus.publish(DISPATCH_EXCHANGE, site_routing_key(site), b"{}", "before")
    got.wait_for_ids({"before"})

    bus.delete_queue(site_queue(site))  # RabbitMQ cancels the consumer
    # It reconnects and finds no queue, again with backoff, until the queue is back.
    wait_until(lambda: consumer.link.failures >= 2, what="consuming the missing queue failed")
    bus.declare_site(site)
    bus.publish(DISPATCH_EXCHANGE, site_routing_key(site), b"{}", "after")
    got.wait_for_ids({"after"}, timeout=15)


def _raise_on_the_io_thread() -> None:
    raise RuntimeError("a bug in a callback on the I/O thread")


@pytest.mark.parametrize("when", ["open", "opening"])
def test_a_connection_abandoned_after_a_callback_error_is_closed(
    rabbitmqctl: None, rabbitmq_url: str, make_bus: Callable[..., Bus], site: str, when: str
) -> None:
    """An exception out of a callback replaces the connection: the old one is closed (not
    left open with its heartbeats and unconfirmed publishes), also when it was still
    opening, and its closing is no reason to drop the new one and reconnect again."""
    bus = make_bus()
    bus.declare_site(site)
    name = f"tme-abandon-{uuid.uuid4().hex[:8]}"
    options = BusOptions(
        connection_name=name, reconnect_min_s=0.001, reconnect_max_s=0.3, confirm_timeout_s=10
    )
    publisher = ConfirmingPublisher(
        connection_parameters(rabbitmq_url, options, "publisher"), options
    )
    publisher.start()
    try:
        if when == "opening":
            publisher.link.call(_raise_on_the_io_thread)  # long before the handshake ends
        message = [(site_routing_key(site), b"{}", "first")]
        assert publisher.publish_many(DISPATCH_EXCHANGE, message) == [None]
        if when == "open":
            publisher.link.call(_raise_on_the_io_thread)
            wait_until(lambda: publisher.link.opened == 2, what="a new channel")
        message = [(site_routing_key(site), b"{}", "second")]
        assert publisher.publish_many(DISPATCH_EXCHANGE, message) == [None]
        wait_until(lambda: publisher.link.failures == 0, what="the new channel healthy")
        wait_until(lambda: len(connection_pids(name)) == 1, timeout=15, what="one connection")
        assert publisher.link.connects == 2  # no reconnect when the old one closed
    finally:
        publisher.stop()


def test_a_broker_outage_is_logged_once_and_its_end_once(
    rabbitmq_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pika logged eight lines at ERROR per failed attempt (148 a minute, measured, for
    a controller's two links), burying TME's own lines; TME's said the first failure
    only, and never that the link was back."""
    target = urlsplit(rabbitmq_url)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5672))
    url = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{relay.port}")
    )
    options = BusOptions(reconnect_min_s=0.01, reconnect_max_s=0.05)
    channels: list[object] = []
    link = AmqpLink(
        connection_parameters(url, options, "outage"),
        "outage",
        options,
        channels.append,
        lambda _error: None,
    )
    for name, level in LoggingSettings().loggers.items():  # the default levels
        caplog.set_level(level, logger=name)
    caplog.set_level(logging.DEBUG, logger="tme.bus")  # last: it sets the capture's level
    link.start()
    try:
        wait_until(lambda: link.failures > 20, timeout=30, what="twenty failed attempts")
        relay.open()
        wait_until(
            lambda: any("recovered" in r.getMessage() for r in caplog.records),
            timeout=10,
            what="a line saying the link is back",
        )
    finally:
        link.stop()
        relay.close()
    said = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.levelno > 10]
    link_log = "tme.bus.amqp_link"
    assert [(name, level) for name, level, _ in said] == [
        (link_log, logging.ERROR),
        (link_log, logging.INFO),
    ]
    assert said[0][2] == "bus link outage failed; reconnecting with backoff"
    assert said[1][2].startswith("bus link outage recovered after")
    assert channels
