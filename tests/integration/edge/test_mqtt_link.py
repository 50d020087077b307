"""The MQTT link against the real Mosquitto: its socket sends small packets at once.

Without TCP_NODELAY, an event published right after this side's PUBACK waited for
the broker's delayed ACK (about 40 ms on Linux) on every hop: bench_e2e measured
agent -> broker at 40 ms p50 before and 1-3 ms after."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from tcp_relay import TcpRelay

from tme.mqtt import MqttLink

pytestmark = pytest.mark.external_service


def test_link_socket_has_nagle_off(mqtt_url: str) -> None:
    link = MqttLink(mqtt_url, f"tme-test-nodelay-{uuid.uuid4().hex[:8]}")
    link.start()
    try:
        assert link.wait_connected(10)
        sock = link._client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()


def test_the_link_says_it_is_connected_inside_its_connect_hooks(mqtt_url: str) -> None:
    """A hook that sends (the gateway's resend_all) must see the link as up, although
    `connected` is set only after the hooks ran."""
    link = MqttLink(mqtt_url, f"tme-test-hook-{uuid.uuid4().hex[:8]}")
    seen_in_hook: list[bool] = []
    link.on_connected(lambda: seen_in_hook.append(link.is_connected()))
    assert not link.is_connected()
    link.start()
    try:
        assert link.wait_connected(10)
        assert seen_in_hook == [True] and link.is_connected()
    finally:
        link.stop()
    assert not link.is_connected()


def test_the_link_says_it_is_down_inside_its_disconnect_hooks(mqtt_url: str) -> None:
    """paho calls on_disconnect before it marks a lost connection as lost: a gateway's
    heartbeat sent for the loss read "connected" if it looked at once. A clean stop
    loses nothing and calls no hook."""
    broker = urlsplit(mqtt_url)
    relay = TcpRelay((broker.hostname or "127.0.0.1", broker.port or 1883))
    relay.open()
    link = MqttLink(
        urlunsplit(broker._replace(netloc=f"127.0.0.1:{relay.port}")),
        f"tme-test-lost-{uuid.uuid4().hex[:8]}",
    )
    seen_in_hook: list[bool] = []
    lost = threading.Event()

    def on_lost() -> None:
        seen_in_hook.append(link.is_connected())
        lost.set()

    link.on_disconnected(on_lost)
    link.start()
    try:
        assert link.wait_connected(10)
        relay.close()
        assert lost.wait(10), "no disconnect hook after the connection was cut"
        assert seen_in_hook == [False] and not link.is_connected()
    finally:
        link.stop()
    assert seen_in_hook == [False]


def test_two_links_under_one_client_id_are_said_to_knock_each_other_off(
    mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent of the same site and name started on two hosts: the broker drops one
    each time the other connects, for ever. Each says so in one error line."""
    from waiting import wait_until

    client_id = f"tme-test-twin-{uuid.uuid4().hex[:8]}"
    links = [MqttLink(mqtt_url, client_id) for _ in range(2)]
    caplog.set_level("ERROR", logger="tme.mqtt")
    try:
        for link in links:
            link.start()
        wait_until(
            lambda: any("same client id" in r.getMessage() for r in caplog.records),
            timeout=60,
            what="the takeover said",
        )
    finally:
        for link in links:
            link.stop(timeout=2)
    said = next(r.getMessage() for r in caplog.records if "same client id" in r.getMessage())
    assert said.startswith(f"mqtt {client_id}: its connection ended 3 times within 120 s")


def test_short_lived_connections_are_said_once_and_long_ones_never() -> None:
    from tme import mqtt

    now = [0.0]
    said: list[str] = []
    watch = mqtt.ShortLived("c1", clock=lambda: now[0])
    handler = _Collect(said)
    mqtt.log.addHandler(handler)
    try:
        for _ in range(5):  # an hour each: a flaky network, not a twin
            watch.began()
            now[0] += 3600
            watch.ended()
        assert said == []
        for _ in range(4):
            watch.began()
            now[0] += 2
            watch.ended()
        assert len(said) == 1  # once, not at every drop
        watch.began()
        now[0] += 1
        watch.ended(taken_over=True)  # MQTT 5 says so; still within the quiet time
        assert len(said) == 1
    finally:
        mqtt.log.removeHandler(handler)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())
