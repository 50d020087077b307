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


def test_a_client_gets_only_the_retained_messages_it_subscribed_to() -> None:
    """Another client's wildcard subscription does not widen what a newcomer is sent."""
    with EmbeddedBroker() as broker:
        watcher = MqttLink(broker.url, "tme-test-gateway")
        watching = threading.Event()
        watcher.subscribe("tme/v1/s/+/state", lambda _message: watching.set())  # like a gateway
        states = MqttLink(broker.url, "tme-test-other-agent")
        try:
            watcher.start()
            states.start()
            assert watcher.wait_connected(10) and states.wait_connected(10)
            assert states.publish_wait("tme/v1/s/b/state", b"online", retain=True, timeout=10)
            assert watching.wait(10)  # the wildcard subscription is in place
            seen = _raw_messages_of_a_client_subscribed_to(broker.url, "tme/v1/s/a/cmd")
        finally:
            states.stop()
            watcher.stop()
        assert seen == ["tme/v1/s/a/cmd"]


def _raw_messages_of_a_client_subscribed_to(url: str, topic: str) -> list[str]:
    """Every topic a plain paho client is sent after subscribing to `topic` only, up to
    a marker message published on `topic` itself."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = url.removeprefix("mqtt://").split(":")
    seen: list[str] = []
    marker = threading.Event()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="raw")

    def on_message(_client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        seen.append(message.topic)
        if message.topic == topic:
            marker.set()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        client.publish(topic, b"marker", qos=1)
        assert marker.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()
    return seen
