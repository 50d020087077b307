"""Agents and gateways run on the credentials `tme mqtt acl` writes, one account each.

With the client id taken from the username, two gateways sharing an account would
share (and keep taking from each other) one session; so each gateway name has its own
account. Here two gateways of one site, each logged in as `tme gateway` does (the mqtt
settings), carry commands to two agents logged in as their YAML says, on a real
Mosquitto with the generated configuration and an in-memory bus for the controller.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import make_command
from controller_queue import ControllerQueue
from mosquitto_site import SiteBroker, generated_broker
from waiting import wait_until

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config
from tme.agents.gateway import Gateway, GatewayConfig
from tme.agents.runner import AgentThread
from tme.bus import Bus, open_bus
from tme.config import Settings
from tme.protocol import DISPATCH_EXCHANGE, Event, site_routing_key

pytestmark = pytest.mark.external_service
TIMEOUT_S = 20


class Controller:
    """The controller's side of the bus: sends commands, collects what comes back."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen = ControllerQueue(bus)

    def run(self, site: str, agent: str) -> None:
        """Send a command to `agent` and wait until it reports success."""
        command = make_command(site, agent)
        self.bus.publish(DISPATCH_EXCHANGE, site_routing_key(site), command.to_json(), command.id)
        self.seen.wait_for(
            lambda i: isinstance(i, Event) and i.command_id == command.id and i.type == "succeeded",
            f"the result of {agent}'s command",
            TIMEOUT_S,
        )


class Edge:
    def __init__(self, broker: SiteBroker, bus_url: str, state_dir: Path) -> None:
        self.broker, self.bus_url, self.state_dir = broker, bus_url, state_dir
        self.running: list[Gateway | AgentThread] = []

    def _login(self, name: str) -> tuple[str, str]:
        username = f"{name}@{self.broker.site}"
        return username, self.broker.passwords[username]

    def gateway(self, name: str) -> Gateway:
        username, password = self._login(name)
        # as `tme gateway` builds it: TME_MQTT__USERNAME / TME_MQTT__PASSWORD(_FILE)
        mqtt = {"port": self.broker.port, "username": username, "password": password}
        gateway = Gateway(
            GatewayConfig(
                site=self.broker.site,
                name=name,
                bus_url=self.bus_url,
                mqtt_url=Settings(mqtt=mqtt).mqtt.effective_url,
                state_dir=self.state_dir / name,
            )
        )
        gateway.start()
        self.running.append(gateway)
        return gateway

    def agent(self, name: str, gateway: str) -> None:
        username, password = self._login(name)
        data = {
            "site": self.broker.site,
            "agent": name,
            "gateway": gateway,
            "mqtt": {"url": self.broker.url, "username": username, "password": password},
            "state_dir": str(self.state_dir / name),
        }
        self.running.append(AgentThread(DeviceAgent(parse_agent_config(data))).start())

    def stop(self, part: Gateway | AgentThread) -> None:
        self.running.remove(part)
        part.stop()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[Edge, Controller]]:
    options = ("--agents", "a,b", "--gateways", "gw1,gw2")
    with generated_broker(tmp_path, *options) as broker:
        bus_url = f"memory://mqtt-accounts-{uuid.uuid4().hex[:8]}"
        bus = open_bus(bus_url)
        bus.start()
        bus.declare_events_queue()
        bus.declare_site(broker.site)
        controller = Controller(bus)
        made = Edge(broker, bus_url, tmp_path / "state")
        try:
            yield made, controller
        finally:
            for part in reversed(made.running):
                part.stop()
            controller.seen.consumer.stop()
            bus.stop()


def test_each_gateway_and_agent_works_with_its_own_account(edge: tuple[Edge, Controller]) -> None:
    made, controller = edge
    site = made.broker.site
    made.agent("a", gateway="gw1")
    made.agent("b", gateway="gw2")
    gw1 = made.gateway("gw1")
    wait_until(lambda: gw1.consuming and gw1.link.is_connected(), what="gw1 up")
    for agent in ("a", "b"):
        controller.run(site, agent)  # only gw1 consumes the site's queue
    gw2 = made.gateway("gw2")
    wait_until(lambda: gw2.consuming and gw2.link.is_connected(), what="gw2 up")
    assert gw1.link.is_connected()  # gw2's login did not end gw1's session
    made.stop(gw1)
    for agent in ("a", "b"):
        controller.run(site, agent)  # now through gw2
    assert gw2.link.is_connected()
