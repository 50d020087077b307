"""The fleet as presence reports it: sites, agents online, devices with their points."""

from __future__ import annotations

import json

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
