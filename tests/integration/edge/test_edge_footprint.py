"""An idle device agent keeps its footprint small: no pydantic until its first command.

pydantic (tme.protocol's wire models) costs an agent about 10 MB of resident memory,
a quarter of its budget (benchmarks/bench_agent_rss.py prints the figures). The
agent runs here in a fresh interpreter, online with a Modbus device, so whatever it
imports shows in sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_helpers import unique

from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]

PUMP = Path(__file__).resolve().parents[3] / "configs" / "profiles" / "pump.yaml"
NOT_AT_IDLE = ("pydantic", "pydantic_core", "tme.protocol", "importlib.metadata")

AGENT = """
import asyncio, json, sys
from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config

async def main():
    agent = DeviceAgent(parse_agent_config(json.loads(sys.argv[1])))
    await agent.start()
    try:
        connected = await asyncio.to_thread(agent.link.wait_connected, 10)
        driver_up = agent.devices.get("pump1").driver._client.connected
        report = {"online": connected, "driver_up": driver_up, "modules": sorted(sys.modules)}
        print(json.dumps(report))
    finally:
        await agent.stop()

asyncio.run(main())
"""


def test_idle_agent_with_a_modbus_device_loads_no_pydantic(
    mqtt_url: str, still_plant_sim: PlantSimulator, tmp_path: Path
) -> None:
    config = {
        "site": unique("site"),
        "agent": unique("agent"),
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
    out = subprocess.run(
        [sys.executable, "-c", AGENT, json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["online"] and report["driver_up"]
    modules = set(report["modules"])
    assert "tme.drivers.modbus" in modules and "tme.agents.presence" in modules
    loaded = [m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_AT_IDLE)]
    assert loaded == []
