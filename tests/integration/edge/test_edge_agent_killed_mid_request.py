"""An agent process SIGKILLed while its write hangs at the machine, restarted at once:
the dead process's request still lands, and must not land between the restarted
agent's next write and its read-back (real agent process, Mosquitto, simulated plant)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import make_command
from edge_helpers import Watcher, send, unique
from waiting import wait_until

from tme.protocol import Presence, evt_topic, state_topic
from tme.simulators.modbus_plant import PlantSimulator

pytestmark = pytest.mark.external_service
pytest_plugins = ["tme.simulators.pytest_plugin"]

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP, SPEED_SETPOINT, TANK = 1, 0, 2
# The dead agent's write is acted on this late; the driver waits longer for an answer,
# so by its own rule the write may land up to REQUEST_TIMEOUT_S after it was sent. The
# restarted agent comes back well within LATE_S (about half a second here).
LATE_S = 2.0
REQUEST_TIMEOUT_S = 2.5


class AgentProcess:
    """`python -m tme.agents` driving the plant's pump over Modbus TCP and its tank over
    RTU (another bus); SIGKILLed and started again on the same state dir."""

    def __init__(self, tmp_path: Path, site: str, agent: str, mqtt_url: str, plant: Any) -> None:
        self.config = tmp_path / "agent.yaml"
        self.config.write_text(
            f"site: {site}\nagent: {agent}\nmqtt: {mqtt_url}\nstate_dir: {tmp_path / 'state'}\n"
            "devices:\n  pump1:\n    driver: modbus_tcp\n"
            f"    connection: {{host: 127.0.0.1, port: {plant.port},"
            f" timeout_s: {REQUEST_TIMEOUT_S}}}\n"
            f"    unit: {PUMP}\n    profile: {PROFILES / 'pump.yaml'}\n"
            "  tank1:\n    driver: modbus_rtu\n"
            f"    connection: {{port: '{plant.rtu_url}', baudrate: 115200, timeout_s: 1}}\n"
            f"    unit: {TANK}\n    profile: {PROFILES / 'tank.yaml'}\n"
        )
        self.log = tmp_path / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tme.agents", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def agent_process(
    tmp_path: Path, mqtt_url: str, still_plant_sim: PlantSimulator
) -> Iterator[Callable[[str, str], AgentProcess]]:
    made: list[AgentProcess] = []

    def make(site: str, agent: str) -> AgentProcess:
        made.append(AgentProcess(tmp_path, site, agent, mqtt_url, still_plant_sim))
        return made[-1]

    yield make
    for process in made:
        process.stop()


def test_a_restarted_agent_keeps_the_bus_quiet_until_the_dead_agents_write_has_landed(
    still_plant_sim: PlantSimulator,
    agent_process: Callable[[str, str], AgentProcess],
    watcher_factory: Callable[[list[str]], Watcher],
) -> None:
    """Write A hangs at the plant when its agent is killed; the restarted agent reports
    A failed with an unknown outcome and keeps the pump's bus quiet for the driver's
    request timeout, so A lands before B's write: B succeeds and the pump holds B's
    value, not A's stale one (before, B landed first and A then overwrote it). The
    tank's bus, where nothing was cut off, serves at once meanwhile."""
    plant = still_plant_sim
    site, agent = unique("site"), unique("agent")
    watcher = watcher_factory([evt_topic(site, agent), state_topic(site, agent)])

    def states() -> list[str]:
        return [m.state for m in watcher.messages if isinstance(m, Presence)]

    process = agent_process(site, agent)
    process.start()
    watcher.wait_for(lambda: states()[-1:] == ["online"], timeout=30)

    plant.inject_fault(
        PUMP, table="holding_register", address=SPEED_SETPOINT, delay_s=LATE_S, remaining=1
    )
    write_a = make_command(
        site, agent, "modbus.write", device="pump1",
        params={"point": "speed_setpoint", "value": 1111, "verify": True},
    )  # fmt: skip
    send(watcher.link, write_a)
    wait_until(lambda: plant.held_requests == 1, what="write A hanging at the plant")
    process.kill()
    watcher.wait_for(lambda: states()[-1:] == ["offline"], timeout=30)  # its will

    process.start()  # at once, on the same record
    watcher.wait_for(lambda: states()[-1:] == ["online"], timeout=30)
    write_b = make_command(
        site, agent, "modbus.write", device="pump1",
        params={"point": "speed_setpoint", "value": 2222, "verify": True},
    )  # fmt: skip
    send(watcher.link, write_b)
    read_tank = make_command(
        site, agent, "modbus.read", device="tank1", params={"point": "valve_opening"}
    )
    send(watcher.link, read_tank)
    assert watcher.wait_final(read_tank.id)[-1].type == "succeeded"
    assert not [e for e in watcher.events(write_b.id) if e.type == "started"], "not held"

    (cut_off,) = [e for e in watcher.wait_final(write_a.id) if e.type == "failed"]
    assert "outcome unknown" in cut_off.reason
    final_b = watcher.wait_final(write_b.id)[-1]
    wait_until(lambda: plant.held_requests == 0, what="write A acted on by the plant")
    assert plant.writes_to(PUMP, SPEED_SETPOINT) == [(1111,), (2222,)]  # each sent once
    assert (final_b.type, final_b.reason) == ("succeeded", "")
    assert plant.read_register(PUMP, SPEED_SETPOINT) == 2222
    assert "waits 2.5 s (its request timeout) before its first request" in process.log.read_text()
