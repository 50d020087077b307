"""A gateway's heartbeat over the real RabbitMQ: it is alive, its links, what it holds."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from commands import make_command
from edge_helpers import EventTap, journal_locked, unique
from tcp_relay import TcpRelay
from waiting import wait_until

from tme.agents import gateway as gateway_module
from tme.agents import journal as journal_module
from tme.protocol import GatewayStatus, Presence

pytestmark = pytest.mark.external_service


def _heartbeats(tap: EventTap) -> list[GatewayStatus]:
    return [i.status for i in tap.items if isinstance(i, Presence) and i.status is not None]


def test_heartbeats_say_the_links_and_the_commands_held(site_setup, agent_factory) -> None:
    """Nothing said on MQTT tells the controller that a gateway died (its will reaches it
    only through another gateway of the site), nor what it holds."""
    site, tap = site_setup["site"], site_setup["tap"]
    away = unique("agent")
    agent_factory(site, away).stop()  # offline: its commands are held at the gateway
    site_setup["gateway"](heartbeat_s=0.2)
    tap.wait_for(lambda: any(s.mqtt_connected and s.consuming for s in _heartbeats(tap)))
    # The gateway holds commands for an agent it knows is offline: it learns that from the
    # agent's retained state, which it forwards after noting it (sooner, a command goes out).
    tap.wait_for(
        lambda: any(
            isinstance(i, Presence) and i.agent == away and i.state == "offline" for i in tap.items
        )
    )
    for _ in range(2):
        site_setup["dispatch"](make_command(site, away, "noop"))
    tap.wait_for(lambda: any(s.commands_pending == 2 for s in _heartbeats(tap)))
    status = _heartbeats(tap)[-1]
    assert status.heartbeat_s == 0.2
    assert (status.commands_unanswered, status.journal_failing) == (0, False)
    beat = next(i for i in tap.items if isinstance(i, Presence) and i.status is not None)
    assert (beat.role, beat.state) == ("gateway", "online")


def test_a_heartbeat_goes_when_mqtt_connects_and_when_it_is_lost(site_setup, mqtt_url) -> None:
    """A gateway that had just started was shown "MQTT DOWN" until its next timed beat,
    a whole period later. The period here is an hour: only the beat sent for the change
    can say that MQTT connected, and then that it was lost."""
    tap = site_setup["tap"]
    broker = urlsplit(mqtt_url)
    relay = TcpRelay((broker.hostname or "127.0.0.1", broker.port or 1883))  # refused for now
    via_relay = urlunsplit(broker._replace(netloc=f"127.0.0.1:{relay.port}"))
    gateway = site_setup["gateway"](mqtt_url=via_relay, heartbeat_s=3600, wait_mqtt=False)
    tap.wait_for(lambda: len(_heartbeats(tap)) == 1)
    assert not _heartbeats(tap)[0].mqtt_connected  # the broker cannot be reached yet
    relay.open()
    try:
        tap.wait_for(lambda: _heartbeats(tap)[-1].mqtt_connected)
        assert gateway.link.is_connected()
    finally:
        relay.close()  # MQTT lost (and refused on every reconnect from now on)
    tap.wait_for(lambda: not _heartbeats(tap)[-1].mqtt_connected)
    assert len(_heartbeats(tap)) == 3, "one beat at start, one for each change"


def test_a_heartbeat_goes_when_the_journal_fails_and_when_it_recovers(
    site_setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands held for a journal that cannot be written are an outage the operator
    must see now, and its end too; the period here is an hour."""
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(gateway_module, "JOURNAL_RETRY_MIN_S", 0.05)
    monkeypatch.setattr(gateway_module, "JOURNAL_RETRY_MAX_S", 0.05)
    site, tap = site_setup["site"], site_setup["tap"]
    gateway = site_setup["gateway"](heartbeat_s=3600)
    tap.wait_for(lambda: any(s.mqtt_connected for s in _heartbeats(tap)))
    with journal_locked(gateway.config.state_dir / gateway_module.JOURNAL_FILE):
        site_setup["dispatch"](make_command(site, unique("agent"), "noop"))
        tap.wait_for(lambda: _heartbeats(tap)[-1].journal_failing)
    tap.wait_for(lambda: not _heartbeats(tap)[-1].journal_failing)
    last = _heartbeats(tap)[-1]
    assert last.commands_pending + last.commands_unanswered == 1  # journaled by then


def test_a_gateway_cut_off_from_rabbitmq_stops_without_waiting_for_a_confirm(
    site_setup, rabbitmq_url: str
) -> None:
    """A heartbeat is nearly always on its way while RabbitMQ does not answer; a stop
    waited for its confirm, up to broker.confirm_timeout_s, before closing the bus."""
    target = urlsplit(rabbitmq_url)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5672))
    relay.open()
    url = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{relay.port}")
    )
    options = {"confirm_timeout_s": 600, "reconnect_max_s": 0.5}
    gateway = site_setup["gateway"](bus_url=url, bus_options=options, heartbeat_s=0.05)
    relay.close()  # RabbitMQ unreachable from now on
    beat = gateway.heartbeat
    assert beat is not None
    wait_until(lambda: beat.in_flight, timeout=10, what="a heartbeat on its way")
    stopping = threading.Thread(target=gateway.stop, name="test-gateway-stop")
    stopping.start()
    stopping.join(60)
    assert not stopping.is_alive(), "the stop waited for a confirm that could not come"
