"""Fixtures for edge tests: agents on threads, MQTT watchers, a site with its gateways,
cleaned up after each test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import EventTap, Watcher, unique

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config
from tme.agents.gateway import Gateway, GatewayConfig
from tme.agents.runner import AgentThread
from tme.bus import open_bus
from tme.protocol import DISPATCH_EXCHANGE, site_queue, site_routing_key


@pytest.fixture
def names() -> tuple[str, str]:
    return unique("site"), unique("agent")


@pytest.fixture
def watcher_factory(mqtt_url: str) -> Iterator[Callable[[list[str]], Watcher]]:
    started: list[Watcher] = []

    def make(topics: list[str]) -> Watcher:
        watcher = Watcher(mqtt_url, topics)
        watcher.link.start()
        assert watcher.link.wait_connected(10)
        started.append(watcher)
        return watcher

    yield make
    for watcher in started:
        watcher.link.stop()


@pytest.fixture
def agent_factory(mqtt_url: str, tmp_path: Path) -> Iterator[Callable[..., AgentThread]]:
    running: list[AgentThread] = []

    def make(site: str, agent: str, **overrides: Any) -> AgentThread:
        data: dict[str, Any] = {
            "site": site,
            "agent": agent,
            "mqtt": mqtt_url,
            "state_dir": str(tmp_path / agent),
            "worker_count": 2,
        }
        data.update(overrides)
        runner = AgentThread(DeviceAgent(parse_agent_config(data))).start()
        assert runner.agent.link.wait_connected(10)
        running.append(runner)
        return runner

    yield make
    for runner in running:
        runner.stop()


@pytest.fixture
def site_setup(rabbitmq_url: str, mqtt_url: str, tmp_path: Path) -> Iterator[dict]:
    """A site's queue on RabbitMQ, a tap of its events standing in for the controller,
    `gateway(**overrides)` starting its gateways and `dispatch(command)` sending it one."""
    site = unique("site")
    bus = open_bus(rabbitmq_url)
    bus.start()
    bus.declare_site(site)
    tap = EventTap(bus, site)
    gateways: list[Gateway] = []

    def gateway(*, wait_mqtt: bool = True, **overrides: Any) -> Gateway:
        """A gateway of the site, started (and connected to MQTT, unless `wait_mqtt` is
        false); `overrides` replace GatewayConfig fields."""
        config = GatewayConfig(
            site=site,
            bus_url=rabbitmq_url,
            mqtt_url=mqtt_url,
            state_dir=tmp_path / "gw",
            events_queue=tap.queue,  # the tap stands in for the controller
            events_binding=f"{site}.#",
        )
        gw = Gateway(dataclasses.replace(config, **overrides))
        gw.start()
        gateways.append(gw)
        assert not wait_mqtt or gw.link.wait_connected(10)
        return gw

    def dispatch(command: object) -> None:
        bus.publish(
            DISPATCH_EXCHANGE,
            site_routing_key(site),
            command.to_json(),  # type: ignore[attr-defined]
            command.id,
        )  # type: ignore[attr-defined]

    yield {"site": site, "bus": bus, "tap": tap, "gateway": gateway, "dispatch": dispatch}
    for gw in gateways:
        gw.stop()
    tap.consumer.stop()
    bus.delete_queue(tap.queue)
    bus.delete_queue(site_queue(site))
    bus.stop()
