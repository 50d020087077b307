"""An agent asked to stop starts nothing more: a command that arrives while it drains, or
that still waits for a worker or its bus, stays recorded as received, and the next
process runs it. Before, such a command started during the drain and was cut off at
its end, then reported failed with an unknown outcome (a write not retried), though
the agent had been asked to stop before it began."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from commands import make_command
from ports import free_port
from waiting import wait_until_async

from tme.agents import agent as agent_module
from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import AgentConfig, MqttSettings
from tme.agents.command_record import CommandRecord
from tme.mqtt import MqttMessage
from tme.protocol import Command, Event

MakeAgent = Callable[[int], tuple[DeviceAgent, list[Event]]]


def _message(command: Command) -> MqttMessage:
    return MqttMessage("tme/v1/s1/a1/cmd", command.to_json(), qos=1, mid=0, retain=False)


def _sleep(seconds: float) -> Command:
    return make_command("s1", "a1", "sleep", params={"seconds": seconds}, timeout_s=60)


@pytest.fixture
async def make_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeAgent]:
    monkeypatch.setattr(agent_module, "DRAIN_TIMEOUT_S", 1.0)  # a short drain: the test waits it
    made: list[DeviceAgent] = []

    def make(worker_count: int) -> tuple[DeviceAgent, list[Event]]:
        mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}")  # no broker needed
        config = AgentConfig(
            site="s1", agent="a1", mqtt=mqtt, state_dir=tmp_path, worker_count=worker_count
        )
        agent = DeviceAgent(config)
        published: list[Event] = []
        agent.events = SimpleNamespace(publish=published.append, flush=lambda: None)  # type: ignore[assignment]
        made.append(agent)
        return agent, published

    yield make
    for agent in made:
        if agent._record is not None:
            await agent.stop()


def _stage(agent: DeviceAgent, command: Command) -> str | None:
    assert agent._record is not None
    entry = agent._record.get(command.id)
    return entry.stage if entry is not None else None


def _stage_kept(state_dir: Path, command: Command) -> str | None:
    """The command's stage in the record the stopped agent left."""
    record = CommandRecord(state_dir / agent_module.RECORD_FILE)
    try:
        entry = record.get(command.id)
    finally:
        record.close()
    return entry.stage if entry is not None else None


async def test_a_command_arriving_while_the_agent_stops_is_left_for_the_next_process(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent, published = make_agent(4)
    await agent.start()
    running, late = _sleep(30), _sleep(30)
    agent._on_message(_message(running))
    await wait_until_async(lambda: _stage(agent, running) == "started", timeout=5)
    stopping = asyncio.create_task(agent.stop())
    await asyncio.sleep(0)  # stop() has begun its drain
    agent._on_message(_message(late))
    await stopping
    assert [e.type for e in published if e.command_id == late.id] == []
    assert _stage_kept(tmp_path, late) == "received"  # the next process runs it


async def test_a_command_waiting_for_a_worker_does_not_start_while_the_agent_stops(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent, published = make_agent(1)
    await agent.start()
    first, waiting = _sleep(0.2), _sleep(30)
    agent._on_message(_message(first))
    agent._on_message(_message(waiting))  # waits for the one worker
    await wait_until_async(lambda: _stage(agent, first) == "started", timeout=5)
    await agent.stop()  # the first one finishes within the drain; the other must not start
    assert "started" not in [e.type for e in published if e.command_id == waiting.id]
    assert _stage_kept(tmp_path, waiting) == "received"
