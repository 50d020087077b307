"""An agent's log lines ride on the command's next event: a quick Modbus write and its
read-back report their lines with the final event (three messages back, not five), and
an operation still running after LINE_DELAY_S sends what it logged on its own first.
Against the real Mosquitto and the simulated plant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from commands import make_command
from edge_helpers import send

from tme.agents.executor import LINE_DELAY_S
from tme.protocol import evt_topic
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]
pytestmark = pytest.mark.external_service

PUMP = Path(__file__).resolve().parents[3] / "configs" / "profiles" / "pump.yaml"


def _pump(sim: PlantSimulator) -> dict[str, Any]:
    connection = {"host": "127.0.0.1", "port": sim.port}
    return {"pump1": {"driver": "modbus_tcp", "connection": connection, "profile": str(PUMP)}}


def _events_writing(names, agent_factory, watcher_factory, sim, value: int) -> list[Any]:  # type: ignore[no-untyped-def]
    """What an agent driving the plant reports for a write of the pump's setpoint."""
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent, devices=_pump(sim))
    params = {"point": "speed_setpoint", "value": value, "verify": True}
    cmd = make_command(site, agent, "modbus.write", device="pump1", params=params)
    send(runner.agent.link, cmd)
    events: list[Any] = watcher.wait_final(cmd.id)
    return events


def test_a_quick_write_reports_its_lines_with_the_final_event(
    names, agent_factory, watcher_factory, still_plant_sim
) -> None:  # type: ignore[no-untyped-def]
    events = _events_writing(names, agent_factory, watcher_factory, still_plant_sim, 1200)
    assert [e.type for e in events] == ["accepted", "started", "succeeded"]
    assert (
        events[-1].line == "writing speed_setpoint = 1200 on pump1\nverified speed_setpoint = 1200"
    )


def test_a_slow_operation_sends_what_it_logged_before_it_ends(
    names, agent_factory, watcher_factory, still_plant_sim
) -> None:  # type: ignore[no-untyped-def]
    still_plant_sim.inject_fault(table="holding_register", delay_s=LINE_DELAY_S * 10, remaining=1)
    events = _events_writing(names, agent_factory, watcher_factory, still_plant_sim, 900)
    assert [e.type for e in events] == ["accepted", "started", "log", "succeeded"]
    assert events[2].line == "writing speed_setpoint = 900 on pump1"
    assert events[3].line == "verified speed_setpoint = 900"
    assert (events[3].at - events[2].at).total_seconds() >= LINE_DELAY_S
