"""The site gateway against real RabbitMQ and Mosquitto, with a real agent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from commands import make_command
from edge_helpers import EventTap, unique
from waiting import wait_until

from tme.agents import event_packer
from tme.agents.gateway import Gateway, GatewayConfig
from tme.mqtt import MqttLink
from tme.protocol import (
    Event,
    Presence,
    evt_topic,
    pack_events,
    state_topic,
    utcnow,
)

pytestmark = pytest.mark.external_service


def _offline(tap: EventTap, agent: str) -> bool:
    return any(
        isinstance(i, Presence) and i.agent == agent and i.state == "offline" for i in tap.items
    )


def test_command_reaches_agent_and_events_come_back(site_setup, agent_factory) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    site_setup["gateway"]()
    agent_factory(site, agent)
    cmd = make_command(site, agent, "noop")
    site_setup["dispatch"](cmd)
    events = tap.wait_type(cmd.id, "succeeded")
    types = [e.type for e in events]
    assert types == ["delivered", "accepted", "started", "succeeded"]
    assert events[0].source == "gateway" and events[-1].source == "agent"
    tap.wait_for(lambda: any(isinstance(i, Presence) and i.agent == agent for i in tap.items))


def test_agent_packs_its_events_for_a_gateway_that_takes_them(
    site_setup, agent_factory, watcher_factory, monkeypatch
) -> None:
    """The gateway's presence says it takes batches; the agent then sends a command's
    events in one MQTT message, and the gateway forwards each of them."""
    monkeypatch.setattr(event_packer, "LINGER_S", 30.0)  # events wait for the final one
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    watcher = watcher_factory([evt_topic(site, agent)])
    site_setup["gateway"]()
    runner = agent_factory(site, agent)
    wait_until(lambda: runner.agent.events.packing, what="the gateway's presence at the agent")
    cmd = make_command(site, agent, "noop")
    site_setup["dispatch"](cmd)
    events = tap.wait_type(cmd.id, "succeeded")
    assert [e.type for e in events] == ["delivered", "accepted", "started", "succeeded"]
    assert [e.type for e in watcher.wait_final(cmd.id)] == ["accepted", "started", "succeeded"]
    assert len(watcher.raw) == 1  # all three in one MQTT message


def test_a_batch_with_a_spoofed_event_is_dropped_whole(site_setup, mqtt_url) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    site_setup["gateway"]()
    liar = MqttLink(mqtt_url, unique("tme-test-liar"))
    liar.start()

    def batch(*events: Event) -> bytes:
        return pack_events(site, [e.to_json() for e in events])[1]

    def agent_a(command_id: str, type_: str) -> Event:
        return Event(command_id=command_id, type=type_, site=site, agent="agent-a")  # type: ignore[arg-type]

    try:
        assert liar.wait_connected(10)
        spoofed = Event(command_id="c-spoof", type="succeeded", site=site, agent="agent-b")
        mixed = batch(agent_a("c-mixed", "accepted"), spoofed, agent_a("c-mixed", "succeeded"))
        assert liar.publish_wait(evt_topic(site, "agent-a"), mixed, 10)
        honest = batch(agent_a("c-ok", "accepted"), agent_a("c-ok", "succeeded"))
        assert liar.publish_wait(evt_topic(site, "agent-a"), honest, 10)
    finally:
        liar.stop()
    assert [e.type for e in tap.wait_type("c-ok", "succeeded")] == ["accepted", "succeeded"]
    assert tap.events("c-spoof") == [] and tap.events("c-mixed") == []  # forwarded in order


def test_offline_agent_gets_command_when_it_returns(site_setup, agent_factory) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    agent_factory(site, agent).stop()  # leaves a retained offline presence
    gw = site_setup["gateway"]()
    tap.wait_for(
        lambda: any(
            isinstance(i, Presence) and i.agent == agent and i.state == "offline" for i in tap.items
        )
    )
    cmd = make_command(site, agent, "noop")
    site_setup["dispatch"](cmd)
    tap.wait_type(cmd.id, "delivered")
    assert gw.journal is not None and gw.journal.get_state(cmd.id) == "pending"  # held
    agent_factory(site, agent)
    events = tap.wait_type(cmd.id, "succeeded")
    assert [e.type for e in events].count("started") == 1


def test_held_command_expires_at_the_gateway(site_setup, agent_factory) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    agent_factory(site, agent).stop()
    site_setup["gateway"]()
    tap.wait_for(lambda: _offline(tap, agent))
    cmd = make_command(site, agent, "noop", not_after=utcnow() + timedelta(seconds=1))
    site_setup["dispatch"](cmd)
    events = tap.wait_type(cmd.id, "expired")
    assert events[-1].source == "gateway" and events[-1].not_started


def test_gateway_restart_loses_nothing(site_setup, agent_factory) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    agent_factory(site, agent).stop()
    first = site_setup["gateway"]()
    tap.wait_for(lambda: _offline(tap, agent))
    cmd = make_command(site, agent, "noop")
    site_setup["dispatch"](cmd)
    tap.wait_type(cmd.id, "delivered")  # journaled and acked: RabbitMQ no longer has it
    first.stop()
    agent_factory(site, agent)
    site_setup["gateway"]()  # only the journal knows the command now
    events = tap.wait_type(cmd.id, "succeeded")
    assert [e.type for e in events].count("started") == 1


def test_wrong_topic_and_malformed_messages_are_dropped(site_setup, mqtt_url) -> None:
    site, tap = site_setup["site"], site_setup["tap"]
    site_setup["gateway"]()
    site_setup["dispatch"](type("Junk", (), {"to_json": lambda self: b"not json", "id": "x"})())
    liar = MqttLink(mqtt_url, unique("tme-test-liar"))
    liar.start()
    try:
        assert liar.wait_connected(10)
        spoofed = Event(command_id="c-spoof", type="succeeded", site=site, agent="agent-b")
        assert liar.publish_wait(evt_topic(site, "agent-a"), spoofed.to_json(), 10)
        assert liar.publish_wait(evt_topic(site, "agent-a"), b"{garbage", 10)
        assert liar.publish_wait(state_topic(site, "agent-a"), b'{"kind": "presence"}', 10)
        honest = Event(command_id="c-ok", type="succeeded", site=site, agent="agent-a")
        assert liar.publish_wait(evt_topic(site, "agent-a"), honest.to_json(), 10)
    finally:
        liar.stop()
    tap.wait_type("c-ok", "succeeded")  # forwarded in order: anything earlier is already in
    assert tap.events("c-spoof") == []
    after_junk = make_command(site, "agent-a", "noop")
    site_setup["dispatch"](after_junk)  # the bus consumer survived the junk command
    tap.wait_type(after_junk.id, "delivered")


@pytest.mark.parametrize("bad_agent", ["bad+agent", "bad#", "a/b"])
def test_a_command_for_an_invalid_agent_name_is_dead_lettered_and_holds_up_nothing(
    site_setup, agent_factory, bad_agent: str
) -> None:
    """A name that cannot be an MQTT topic level would make every dispatch pass fail at
    its send; it is refused at intake and answered `rejected` (never sent, so a retry is
    safe), and the commands after it go on."""
    site, tap = site_setup["site"], site_setup["tap"]
    agent = unique("agent")
    gw = site_setup["gateway"]()
    agent_factory(site, agent)
    bad = make_command(site, bad_agent, "noop")
    good = make_command(site, agent, "noop")
    site_setup["dispatch"](bad)
    site_setup["dispatch"](good)
    tap.wait_type(good.id, "succeeded")
    assert gw.journal is not None and gw.journal.get_state(bad.id) is None
    [rejected] = tap.wait_type(bad.id, "rejected")
    assert (rejected.source, rejected.not_started) == ("gateway", True)
    assert f"invalid agent name {bad_agent!r}" in rejected.reason


def test_the_gateway_queues_no_command_while_mqtt_is_down(
    site_setup, rabbitmq_url: str, tmp_path: Path
) -> None:
    """paho would keep every publish in memory until a reconnect; the gateway journals
    and reports `delivered` as usual but sends nothing until MQTT is up."""
    site, tap = site_setup["site"], site_setup["tap"]
    config = GatewayConfig(
        site=site,
        bus_url=rabbitmq_url,
        mqtt_url="mqtt://127.0.0.1:9",  # nothing listens there: MQTT stays down
        state_dir=tmp_path / "gw-down",
        resend_after_s=0.0,
        events_queue=tap.queue,
        events_binding=f"{site}.#",
    )
    gw = Gateway(config)
    gw.start()
    try:
        cmd = make_command(site, unique("agent"), "noop")
        site_setup["dispatch"](cmd)
        tap.wait_type(cmd.id, "delivered")
        assert gw._dispatcher is not None and gw.journal is not None
        gw._dispatcher.dispatch_open_entries()  # one more pass, whatever the thread did
        assert gw.journal.get_state(cmd.id) == "pending"
        assert len(gw.link._client._out_messages) == 0
    finally:
        gw.stop()


def test_a_second_gateway_on_a_state_directory_in_use_stops_at_once(site_setup) -> None:
    """Two gateways on one journal would each send, expire and close the other's
    commands: the second says so in one line and starts nothing."""
    import pytest

    from tme.errors import ConfigError

    first = site_setup["gateway"]()
    with pytest.raises(ConfigError, match=r"another gateway .* uses the state directory"):
        site_setup["gateway"](name="gw2")
    assert first.link.is_connected()
