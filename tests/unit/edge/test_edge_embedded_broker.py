"""The embedded broker: a paho MQTT 3.1.1 round trip, persistent sessions, loopback only."""

from __future__ import annotations

import threading

import pytest

from tme.embedded_broker import EmbeddedBroker
from tme.errors import ConfigError
from tme.mqtt import MqttLink, MqttMessage


def test_paho_311_round_trip_with_manual_ack() -> None:
    with EmbeddedBroker() as broker:
        received: list[MqttMessage] = []
        got = threading.Event()
        sub = MqttLink(broker.url, "tme-test-sub", manual_ack=True)

        def handler(message: MqttMessage) -> None:
            received.append(message)
            sub.ack(message)
            got.set()

        sub.subscribe("tme/v1/s/a/cmd", handler)
        pub = MqttLink(broker.url, "tme-test-pub")
        try:
            sub.start()
            pub.start()
            assert sub.wait_connected(10) and pub.wait_connected(10)
            assert pub.publish_wait("tme/v1/s/a/cmd", b'{"x": 1}', timeout=10)
            assert got.wait(10)
        finally:
            pub.stop()
            sub.stop()
        assert received[0].payload == b'{"x": 1}' and received[0].qos == 1


def test_refuses_to_bind_beyond_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        EmbeddedBroker(host="0.0.0.0")
