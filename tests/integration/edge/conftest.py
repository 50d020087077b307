"""Fixtures for edge tests: agents on threads and MQTT watchers, cleaned up after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import Watcher, unique

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config
from tme.agents.runner import AgentThread


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
