"""Which handler an incoming MQTT topic goes to: remembered per topic, never stale."""

from __future__ import annotations

import pytest

from tme import mqtt
from tme.mqtt import MqttLink, MqttMessage


def _handler(_message: MqttMessage) -> None: ...


def _other(_message: MqttMessage) -> None: ...


def test_a_topic_goes_to_its_subscription_and_a_later_one_is_seen() -> None:
    link = MqttLink("mqtt://127.0.0.1:1", "tme-test-routes")  # never connected
    link.subscribe("tme/v1/s/+/evt", _handler)
    assert link._route("tme/v1/s/a/evt") == (_handler, None)
    assert link._route("tme/v1/s/a/state") is None
    link.subscribe("tme/v1/s/+/state", _other)  # what was unmatched before is matched now
    assert link._route("tme/v1/s/a/state") == (_other, None)
    assert link._route("tme/v1/s/a/evt") == (_handler, None)


def test_the_remembered_topics_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "ROUTES_REMEMBERED", 3)
    link = MqttLink("mqtt://127.0.0.1:1", "tme-test-routes")
    link.subscribe("tme/v1/s/+/evt", _handler)
    for n in range(10):
        assert link._route(f"tme/v1/s/agent-{n}/evt") == (_handler, None)
        assert len(link._routes) <= 3
