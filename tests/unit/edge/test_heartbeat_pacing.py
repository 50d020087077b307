"""When a gateway's heartbeat goes: every period, and soon after a change the operator
sees, but no more than one a CHANGE_GAP_S however often the state flaps; one at a time
while RabbitMQ has not confirmed the last. Driven tick by tick on a made-up clock."""

from __future__ import annotations

import pytest

from tme.agents.bus_publisher import Outgoing
from tme.agents.heartbeat import Heartbeat
from tme.protocol import GatewayStatus, Presence, decode_any

PERIOD_S, GAP_S = 30.0, 1.0


class Publisher:
    """Takes what the heartbeat submits; `confirm` plays RabbitMQ's confirm."""

    def __init__(self) -> None:
        self.items: list[Outgoing] = []

    def submit(self, item: Outgoing) -> None:
        self.items.append(item)

    def confirm(self) -> None:
        after = self.items[-1].after
        assert after is not None
        after()


class Gateway:
    def __init__(self) -> None:
        self.mqtt_connected = False
        self.broken = False

    def status(self) -> GatewayStatus:
        if self.broken:
            raise OSError("journal unreadable")
        return GatewayStatus(
            heartbeat_s=PERIOD_S, mqtt_connected=self.mqtt_connected, consuming=True
        )


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def beat(publisher: Publisher, gateway: Gateway) -> Heartbeat:
    heartbeat = Heartbeat(
        "plant-1",
        "gw",
        publisher,
        gateway.status,
        PERIOD_S,
        change_gap_s=GAP_S,  # type: ignore[arg-type]
    )
    assert heartbeat.tick(0.0) == PERIOD_S  # the first goes at once
    publisher.confirm()
    return heartbeat


def said(publisher: Publisher) -> list[bool]:
    """mqtt_connected, as each heartbeat sent said it."""
    statuses = []
    for item in publisher.items:
        presence = decode_any(item.body)
        assert isinstance(presence, Presence) and presence.status is not None
        statuses.append(presence.status.mqtt_connected)
    return statuses


def test_a_change_goes_once_its_gap_after_the_last_beat_and_says_the_state_then(
    beat: Heartbeat, publisher: Publisher, gateway: Gateway
) -> None:
    gateway.mqtt_connected = True
    beat.changed()
    assert beat.tick(0.01) == pytest.approx(GAP_S - 0.01)  # too soon after the first
    assert beat.tick(GAP_S) == PERIOD_S - GAP_S
    assert said(publisher) == [False, True]


def test_a_flapping_link_costs_one_beat_per_gap(
    beat: Heartbeat, publisher: Publisher, gateway: Gateway
) -> None:
    now = GAP_S
    for step in range(1000):  # a hundred changes a second for ten seconds
        gateway.mqtt_connected = step % 2 == 0
        beat.changed()
        beat.tick(now)
        if beat.in_flight:
            publisher.confirm()
        now += 0.01
    assert len(publisher.items) == 1 + 10
    assert beat.tick(now) > 0  # the last change went with the last beat


def test_without_a_change_only_the_period_sends(beat: Heartbeat, publisher: Publisher) -> None:
    assert beat.tick(5.0) == PERIOD_S - 5.0
    assert len(publisher.items) == 1
    assert beat.tick(PERIOD_S) == PERIOD_S
    assert len(publisher.items) == 2


def test_a_change_while_a_beat_waits_for_its_confirm_goes_after_the_confirm(
    beat: Heartbeat, publisher: Publisher, gateway: Gateway
) -> None:
    gateway.mqtt_connected = True
    beat.changed()
    beat.tick(GAP_S)  # sent, not confirmed
    gateway.mqtt_connected = False
    beat.changed()
    assert beat.tick(5.0) == PERIOD_S - 5.0  # waits for the confirm (which wakes it)
    assert said(publisher) == [False, True]
    publisher.confirm()
    beat.tick(5.0)
    assert said(publisher) == [False, True, False]


def test_a_change_whose_status_cannot_be_read_is_tried_again_a_gap_later(
    beat: Heartbeat, publisher: Publisher, gateway: Gateway
) -> None:
    gateway.broken = True
    beat.changed()
    assert beat.tick(GAP_S) == pytest.approx(GAP_S)  # failed: not again at once
    gateway.broken = False
    gateway.mqtt_connected = True
    beat.tick(2 * GAP_S)
    assert said(publisher) == [False, True]
