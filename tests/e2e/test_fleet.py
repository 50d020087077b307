"""The fleet as presence reports it: sites, agents online, devices with their points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from typer.testing import CliRunner
from waiting import wait_until

from tme.cli.main import app as cli


def test_agents_devices_and_sites_from_presence(embedded_stack, client_of) -> None:
    client = client_of(embedded_stack)
    site = embedded_stack.config.site

    def online_agents() -> set[str]:
        return {a.name for a in client.fleet.agents(site=site, online=True) if a.role == "agent"}

    wait_until(
        lambda: online_agents() == {"skid-a", "line-b", "lab-c"},
        timeout=15,
        what="three agents online",
    )
    devices = {d.name: d for d in client.fleet.devices(site=site)}
    assert set(devices) == {"pump1", "tank1", "conveyor1", "meter1"}
    setpoint = next(p for p in devices["pump1"].points if p.name == "speed_setpoint")
    assert (setpoint.unit, setpoint.access, setpoint.min, setpoint.max) == ("rpm", "rw", 0, 3000)
    # a serial command's argument limits travel with the presence, over MQTT and the bus
    voltage = next(p for p in devices["meter1"].points if p.name == "set_voltage")
    assert voltage.limits() == "float 0..30"
    sites = {s.name: s for s in client.fleet.sites()}
    assert sites[site].agents_online == 3

    result = CliRunner().invoke(
        cli,
        ["agent", "list", "--url", embedded_stack.url, "--json"],
        env={"TME_TOKEN": embedded_stack.token},
    )
    assert result.exit_code == 0, result.output
    assert {a["name"] for a in json.loads(result.output) if a["site"] == site} >= {"skid-a"}


def test_agent_going_away_is_shown_offline(embedded_stack, client_of) -> None:
    client = client_of(embedded_stack)
    site = embedded_stack.config.site

    def state(name: str) -> bool | None:
        found = [a for a in client.fleet.agents(site=site) if a.name == name]
        return found[0].online if found else None

    wait_until(lambda: state("line-b") is True, timeout=15, what="line-b online")
    embedded_stack.stop_agent("line-b")
    wait_until(lambda: state("line-b") is False, timeout=15, what="line-b offline")


def test_an_agent_killed_is_shown_offline_and_online_again_once_restarted(
    real_stack, client_of, tmp_path
) -> None:
    """No goodbye: the MQTT broker publishes the agent's will, the gateway forwards it.
    The will used to carry the time it was set at start, before the agent's online, and
    the controller kept the newer online for good."""
    client = client_of(real_stack)
    site = real_stack.config.site
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"site: {site}\nagent: crashy\nmqtt: {real_stack.mqtt_url}\nstate_dir: state\n"
    )

    def online() -> bool | None:
        found = [a for a in client.fleet.agents(site=site) if a.name == "crashy"]
        return found[0].online if found else None

    for _life in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "tme.cli.main", "agent", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: online() is True, timeout=30, what="crashy online")
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            wait_until(lambda: online() is False, timeout=30, what="crashy offline")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_the_gateway_says_how_it_does(real_stack, client_of) -> None:
    client = client_of(real_stack)
    site = real_stack.config.site

    def gateway_status() -> dict | None:
        found = [a for a in client.fleet.agents(site=site) if a.role == "gateway"]
        return found[0].status if found else None

    status = wait_until(gateway_status, timeout=15, what="a heartbeat of the gateway")
    assert isinstance(status, dict)
    assert status["mqtt_connected"] is True and status["consuming"] is True
    assert status["commands_pending"] == 0 and "received_at" in status
