"""A serial command's text argument cannot smuggle a second command onto the line.

On a SCPI instrument ";" chains commands within one line, so free text in a read-only
query ("MEAS:VOLT? {0}" with "AUTO;:OUTP ON") would switch the output on. The agent
rejects it at its check, before any byte is sent. Against the real Mosquitto and the
simulated instrument, read directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from commands import make_command
from edge_helpers import send

from tme.protocol import evt_topic
from tme.simulators.instrument import SerialInstrument

pytest_plugins = ["tme.simulators.pytest_plugin"]
pytestmark = pytest.mark.external_service

PROFILE = """\
name: instrument
commands:
  measure_voltage:
    request: "MEAS:VOLT? {0}"
    args: [{type: str}]
    parse: float
"""


def _meter(sim: SerialInstrument, tmp_path: Path) -> dict[str, Any]:
    profile = tmp_path / "instrument.yaml"
    profile.write_text(PROFILE)
    connection = {"port": sim.url, "timeout_s": 2}
    return {"meter1": {"driver": "serial", "connection": connection, "profile": str(profile)}}


def test_a_chained_command_in_a_read_only_argument_is_rejected_and_nothing_changes(
    names, agent_factory, watcher_factory, instrument_sim, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent, devices=_meter(instrument_sim, tmp_path))

    def measure(range_: str) -> list[Any]:
        params = {"command": "measure_voltage", "args": [range_]}
        cmd = make_command(site, agent, "serial.command", device="meter1", params=params)
        send(runner.agent.link, cmd)
        events: list[Any] = watcher.wait_final(cmd.id)
        return events

    (rejected,) = measure("AUTO;:OUTP ON")
    assert rejected.type == "rejected"
    assert "argument 0" in rejected.reason and "';'" in rejected.reason
    assert instrument_sim.requests == [] and not instrument_sim.device.output_on

    assert measure("AUTO")[-1].type == "succeeded"  # the same query, with a plain argument
    assert instrument_sim.requests == ["MEAS:VOLT? AUTO"]
    assert not instrument_sim.device.output_on
