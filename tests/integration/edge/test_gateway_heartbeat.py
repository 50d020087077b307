"""A gateway's heartbeat over the real RabbitMQ: it is alive, its links, what it holds."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from commands import make_command
from edge_helpers import EventTap, unique
from tcp_relay import TcpRelay
from waiting import wait_until

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
