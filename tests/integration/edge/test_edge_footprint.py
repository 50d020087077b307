"""A device agent keeps its footprint small: no pydantic, idle or after running commands.

pydantic costs an agent about 10 MB of resident memory, a quarter of its budget
(benchmarks/bench_agent_rss.py prints the figures); the wire messages (tme.protocol)
are msgspec structs so the agent never needs it. The agent runs here in a fresh
interpreter, online with a Modbus device, so whatever it imports shows in sys.modules:
once idle, and again after it has run a command sent over MQTT from this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from commands import make_command
from edge_helpers import Watcher, send, unique

from tme.protocol import Presence, evt_topic, state_topic
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]

PUMP = Path(__file__).resolve().parents[3] / "configs" / "profiles" / "pump.yaml"
NEVER = ("pydantic", "pydantic_core", "importlib.metadata")  # the last: pydantic's plugin scan

# Prints a report when online, then another after each line read from stdin; stops at EOF.
AGENT = """
import asyncio, json, sys
from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config

def report(agent, connected):
    driver_up = agent.devices.get("pump1").driver._client.connected
    line = {"online": connected, "driver_up": driver_up, "modules": sorted(sys.modules)}
    print(json.dumps(line), flush=True)

async def main():
    agent = DeviceAgent(parse_agent_config(json.loads(sys.argv[1])))
    await agent.start()
    try:
        connected = await asyncio.to_thread(agent.link.wait_connected, 10)
        report(agent, connected)
        while await asyncio.to_thread(sys.stdin.readline):
            report(agent, connected)
    finally:
        await agent.stop()

asyncio.run(main())
"""


def _loaded(report: dict[str, object], names: tuple[str, ...]) -> list[str]:
    modules = report["modules"]
    assert isinstance(modules, list)
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


def test_agent_with_a_modbus_device_loads_no_pydantic_idle_or_after_a_command(
    mqtt_url: str,
    still_plant_sim: PlantSimulator,
    tmp_path: Path,
    watcher_factory: Callable[[list[str]], Watcher],
) -> None:
    site, agent = unique("site"), unique("agent")
    config = {
        "site": site,
        "agent": agent,
        "mqtt": mqtt_url,
        "state_dir": str(tmp_path / "state"),
        "devices": {
            "pump1": {
                "driver": "modbus_tcp",
                "connection": {"host": "127.0.0.1", "port": still_plant_sim.port},
                "profile": str(PUMP),
            }
        },
    }
    watcher = watcher_factory([evt_topic(site, agent), state_topic(site, agent)])
    process = subprocess.Popen(
        [sys.executable, "-c", AGENT, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        idle = json.loads(process.stdout.readline())
        assert idle["online"] and idle["driver_up"]
        assert {"tme.drivers.modbus", "tme.agents.presence"} <= set(idle["modules"])
        assert _loaded(idle, NEVER) == []

        # `online` goes out after the agent subscribed to its commands, on the same connection
        watcher.wait_for(
            lambda: any(isinstance(m, Presence) and m.state == "online" for m in watcher.messages)
        )
        params = {"point": "speed_setpoint"}
        command = make_command(site, agent, "modbus.read", device="pump1", params=params)
        send(watcher.link, command)
        final = watcher.wait_final(command.id)[-1]
        assert final.type == "succeeded", final.reason
        assert final.result is not None and "speed_setpoint" in final.result["values"]

        process.stdin.write("report\n")
        process.stdin.flush()
        after = json.loads(process.stdout.readline())
        assert "tme.protocol" in after["modules"]
        assert _loaded(after, NEVER) == []
    finally:
        process.stdin.close()
        assert process.wait(30) == 0
