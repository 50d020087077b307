"""A stop request for a command the agent took but has not begun (its task not run yet):
the command is answered `canceled`, never started, and a later offer of it is answered
from the record. The gateway offers a held command and its stop request together when
the agent comes back; the command's task was cancelled before its first step, so it
recorded nothing, stayed `received`, and ran when the gateway offered it again 30 s
later: a canceled write reached the machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from commands import make_command
from ports import free_port
from waiting import wait_until_async

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import AgentConfig, MqttSettings
from tme.mqtt import MqttMessage
from tme.protocol import Command, Event


def _message(command: Command) -> MqttMessage:
    return MqttMessage("tme/v1/s1/a1/cmd", command.to_json(), qos=1, mid=0, retain=False)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[DeviceAgent, list[Event]]]:
    mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}")  # nobody there: no broker needed
    agent = DeviceAgent(AgentConfig(site="s1", agent="a1", mqtt=mqtt, state_dir=tmp_path))
    published: list[Event] = []
    agent.events = SimpleNamespace(publish=published.append, flush=lambda: None)  # type: ignore[assignment]
    await agent.start()
    yield agent, published
    await agent.stop()


async def test_a_command_stopped_before_its_first_step_is_canceled_for_good(
    agent: tuple[DeviceAgent, list[Event]],
) -> None:
    device_agent, published = agent
    command = make_command("s1", "a1", "sleep", params={"seconds": 0.01})
    stop = make_command("s1", "a1", "cancel", params={"command_id": command.id})
    device_agent._on_message(_message(command))
    device_agent._on_message(_message(stop))  # in the same turn of the loop
    record = device_agent._record
    assert record is not None

    def final_of_command() -> Event | None:
        entry = record.get(command.id)
        return entry.final_event if entry is not None else None

    final = await wait_until_async(final_of_command, timeout=5, what="the command's answer")
    assert final.type == "canceled" and final.not_started
    assert final.reason == "canceled before it started"
    device_agent._on_message(_message(command))  # offered again by the gateway
    await wait_until_async(
        lambda: [e for e in published if e.command_id == command.id].count(final) == 2,
        timeout=5,
        what="the recorded answer, again",
    )
    ours = [e.type for e in published if e.command_id == command.id]
    assert "started" not in ours and ours.count("canceled") == 2
