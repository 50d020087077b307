"""A device configured to stop on link loss (real RabbitMQ, real Mosquitto, simulated
plant): when nobody at the controller could see or stop it for its time, its agent
writes its safe values and latches it, and it stays stopped after the link is back
until it is resumed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from commands import make_command
from edge_helpers import send, unique
from rabbitmq_admin import connection_pids, rabbitmqctl, require_rabbitmqctl
from tcp_relay import TcpRelay
from waiting import wait_until

from tme.mqtt import MqttLink
from tme.protocol import Presence, evt_topic, state_topic
from tme.simulators.modbus_plant import PlantSimulator

pytestmark = pytest.mark.external_service

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP = 1
RUN_COIL, SPEED = 0, 0
CONVEYOR = 3
AFTER_S = 1.0


def pump(port: int, stop_after_s: float | None = AFTER_S) -> dict:
    device = {
        "driver": "modbus_tcp",
        "connection": {"host": "127.0.0.1", "port": port, "timeout_s": 2},
        "unit": PUMP,
        "profile": str(PROFILES / "pump.yaml"),  # safe values: run false, speed 0
    }
    if stop_after_s is not None:
        device["stop_on_link_loss_s"] = stop_after_s
    return device


def running_pump(plant: PlantSimulator) -> None:
    plant.write_register(PUMP, SPEED, 1500)
    plant.write_bit(PUMP, RUN_COIL, True)


def stopped(plant: PlantSimulator) -> bool:
    return plant.read_register(PUMP, SPEED) == 0 and plant.read_bit(PUMP, RUN_COIL) is False


def gateway_upstream(watcher, site: str) -> bool | None:  # type: ignore[no-untyped-def]
    said = [
        m
        for m in watcher.messages
        if isinstance(m, Presence) and m.role == "gateway" and m.site == site
    ]
    return said[-1].upstream if said and said[-1].state == "online" else None


def test_a_gateway_cut_off_from_rabbitmq_has_its_agent_stop_the_pump_until_resumed(
    site_setup, rabbitmq_url: str, agent_factory, watcher_factory
) -> None:
    """The site's WAN drops: the gateway runs and the broker at the site too, but
    RabbitMQ cannot be reached. The gateway says so in its presence, and after
    stop_on_link_loss_s the agent writes the pump's safe values and latches it; when the
    link is back the pump stays stopped, its changes refused, until a resume."""
    site = site_setup["site"]
    agent = "pumps"
    target = urlsplit(rabbitmq_url)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5672))
    relay.open()
    url = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{relay.port}")
    )
    watcher = watcher_factory(
        [state_topic(site, "gateway"), state_topic(site, agent), evt_topic(site, agent)]
    )
    options = {"confirm_timeout_s": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 0.2}
    site_setup["gateway"](bus_url=url, bus_options=options, heartbeat_s=0.2)
    watcher.wait_for(lambda: gateway_upstream(watcher, site) is True)
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        running_pump(plant)
        runner = agent_factory(site, agent, devices={"pump1": pump(plant.port)})
        wait_until(lambda: runner.agent.links.up, what="the agent sees the link")
        relay.close()  # RabbitMQ unreachable from the site from now on
        watcher.wait_for(lambda: gateway_upstream(watcher, site) is False)
        wait_until(lambda: stopped(plant), timeout=15, what="the pump's safe values written")
        latch = runner.agent.stops.get("pump1")
        assert latch is not None
        assert latch.by == f"agent {agent} (link loss)"
        assert "link to the controller lost for 1 s" in latch.reason
        assert "cannot reach RabbitMQ" in latch.reason

        back = TcpRelay(relay.target, port=relay.port)
        back.open()
        try:
            watcher.wait_for(lambda: gateway_upstream(watcher, site) is True, timeout=20)
            # the link is back; the pump is not: a change is refused until it is resumed
            start = make_command(
                site, agent, "modbus.write", device="pump1",
                params={"point": "run", "value": True},
            )  # fmt: skip
            send(runner.agent.link, start)
            refused = watcher.wait_final(start.id)[-1]
            assert refused.type == "rejected"
            assert "was stopped by agent pumps (link loss)" in (refused.reason or "")
            assert plant.read_bit(PUMP, RUN_COIL) is False
            # the agent's own stop is no run of the controller's: none of its events went
            # (they would have come before this answer, on the same connection)
            assert not [
                m for m in watcher.messages if getattr(m, "command_id", "").startswith("local-")
            ]
            # ... and the controller hears of the latch in the agent's presence
            watcher.wait_for(lambda: _stopped_in_presence(watcher, site, agent))

            resume = make_command(site, agent, "device.resume", device="pump1")
            send(runner.agent.link, resume)
            assert watcher.wait_final(resume.id)[-1].type == "succeeded"
            again = make_command(
                site, agent, "modbus.write", device="pump1",
                params={"point": "run", "value": True},
            )  # fmt: skip
            send(runner.agent.link, again)
            assert watcher.wait_final(again.id)[-1].type == "succeeded"
            assert plant.read_bit(PUMP, RUN_COIL) is True
        finally:
            back.close()


def test_an_idle_gateway_says_at_once_that_it_lost_rabbitmq_and_when_it_is_back(
    site_setup, rabbitmq_url: str, watcher_factory
) -> None:
    """Nothing flows (no event, its heartbeat an hour away) when RabbitMQ is cut off: the
    gateway's connections closing say so in its presence within seconds, where it waited
    for its next publish and that publish's confirm timeout; and it says it is back once
    they are."""
    site = site_setup["site"]
    target = urlsplit(rabbitmq_url)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5672))
    relay.open()
    url = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{relay.port}")
    )
    watcher = watcher_factory([state_topic(site, "gateway")])
    options = {"confirm_timeout_s": 30, "reconnect_min_s": 0.1, "reconnect_max_s": 0.2}
    site_setup["gateway"](bus_url=url, bus_options=options, heartbeat_s=3600)
    watcher.wait_for(lambda: gateway_upstream(watcher, site) is True)
    relay.close()  # idle: nothing is published from now on
    # the old way it took the next publish (an hour away) plus 30 s of confirm timeout
    watcher.wait_for(lambda: gateway_upstream(watcher, site) is False, timeout=5)
    back = TcpRelay(relay.target, port=relay.port)
    back.open()
    try:
        watcher.wait_for(lambda: gateway_upstream(watcher, site) is True, timeout=10)
    finally:
        back.close()


def test_a_gateway_whose_site_queue_connection_drops_says_so_until_it_consumes_again(
    site_setup, watcher_factory
) -> None:
    """Its publishing connection is fine but the one that takes the site's commands is
    closed by RabbitMQ: the controller cannot reach the site meanwhile, and the gateway
    says `upstream: false` until it consumes again."""
    require_rabbitmqctl()
    site = site_setup["site"]
    name = unique("tme-gw-conn")
    watcher = watcher_factory([state_topic(site, "gateway")])
    options = {"connection_name": name, "reconnect_min_s": 0.5, "reconnect_max_s": 0.5}
    site_setup["gateway"](bus_options=options, heartbeat_s=3600)
    watcher.wait_for(lambda: gateway_upstream(watcher, site) is True)
    seen = len(watcher.messages)
    (consumer,) = connection_pids(f"{name}:consumer:")
    rabbitmqctl("close_connection", consumer, "TME test: the site queue's connection drops")
    watcher.wait_for(lambda: False in _upstreams(watcher, site, seen), timeout=5)
    watcher.wait_for(lambda: gateway_upstream(watcher, site) is True, timeout=10)


def _upstreams(watcher, site: str, after: int) -> list[bool | None]:  # type: ignore[no-untyped-def]
    """What the gateway's presence said of RabbitMQ since the first `after` messages."""
    return [
        m.upstream
        for m in watcher.messages[after:]
        if isinstance(m, Presence) and (m.site, m.role, m.state) == (site, "gateway", "online")
    ]


def _stopped_in_presence(watcher, site: str, agent: str) -> bool:  # type: ignore[no-untyped-def]
    said = [
        m
        for m in watcher.messages
        if isinstance(m, Presence) and (m.site, m.agent, m.role) == (site, agent, "agent")
    ]
    devices = said[-1].devices if said else []
    return any(d.get("name") == "pump1" and d.get("stopped") for d in devices)


def test_an_agent_cut_off_from_its_broker_stops_its_pump_and_not_a_device_without_the_setting(
    names, agent_factory, mqtt_url: str
) -> None:
    """The agent's own network to the site's broker is lost (the gateway is fine): the
    pump configured to stop does; the conveyor on the same agent, without the setting,
    is not touched."""
    site, agent = names
    gateway = MqttLink(mqtt_url, f"tme-test-gw-{site}")
    gateway.start()
    assert gateway.wait_connected(10)
    online = Presence(site=site, agent="gateway", role="gateway", state="online", upstream=True)
    assert gateway.publish_wait(state_topic(site, "gateway"), online.to_json(), 10, retain=True)
    broker = urlsplit(mqtt_url)
    relay = TcpRelay((broker.hostname or "127.0.0.1", broker.port or 1883))
    relay.open()
    via_relay = urlunsplit(broker._replace(netloc=f"127.0.0.1:{relay.port}"))
    try:
        with PlantSimulator.run_in_thread(tick_s=None) as plant:
            running_pump(plant)
            plant.write_bit(CONVEYOR, 0, True)  # its belt enabled
            conveyor = pump(plant.port, stop_after_s=None) | {
                "unit": CONVEYOR,
                "profile": str(PROFILES / "conveyor.yaml"),
            }
            runner = agent_factory(
                site, agent, mqtt=via_relay, devices={"pump1": pump(plant.port), "belt": conveyor}
            )
            wait_until(lambda: runner.agent.links.up, what="the agent sees the link")
            relay.close()
            wait_until(lambda: stopped(plant), timeout=15, what="the pump's safe values written")
            latch = runner.agent.stops.get("pump1")
            assert latch is not None
            assert "no connection to the site's MQTT broker" in latch.reason
            assert runner.agent.stops.get("belt") is None
            assert plant.request_count(CONVEYOR, writes_only=True) == 0
            assert plant.read_bit(CONVEYOR, 0) is True
    finally:
        relay.close()
        gateway.publish_wait(state_topic(site, "gateway"), b"", 10, retain=True)
        gateway.stop()


def test_with_two_gateways_the_pump_stops_only_when_neither_is_left(
    names, agent_factory, mqtt_url: str
) -> None:
    """A site with a second gateway for redundancy (`gateway: [gw1, gw2]`): gw1 going
    offline leaves the link up through gw2, and nothing stops; once gw2 goes too, the
    pump is stopped."""
    site, agent = names
    fake = MqttLink(mqtt_url, f"tme-test-gws-{site}")
    fake.start()
    assert fake.wait_connected(10)

    def say(gateway: str, state: str) -> None:
        presence = Presence(site=site, agent=gateway, role="gateway", state=state, upstream=True)
        assert fake.publish_wait(state_topic(site, gateway), presence.to_json(), 10, retain=True)

    say("gw1", "online")
    say("gw2", "online")
    try:
        with PlantSimulator.run_in_thread(tick_s=None) as plant:
            running_pump(plant)
            runner = agent_factory(
                site, agent, gateway=["gw1", "gw2"], devices={"pump1": pump(plant.port)}
            )
            wait_until(lambda: runner.agent.links.up, what="the agent sees the link")
            say("gw1", "offline")
            wait_until(lambda: "gw1" not in runner.agent.links.gateways, what="gw1 gone")
            assert runner.agent.links.up and not runner.agent.links._timers  # gw2 relays
            say("gw2", "offline")
            wait_until(lambda: stopped(plant), timeout=15, what="the pump's safe values written")
            latch = runner.agent.stops.get("pump1")
            assert latch is not None and "the site gateway is offline" in latch.reason
    finally:
        for gateway in ("gw1", "gw2"):
            fake.publish_wait(state_topic(site, gateway), b"", 10, retain=True)
        fake.stop()
