"""An agent or gateway takes only names a task can target: the API's (1 to 64 letters,
digits, - and _, starting with a letter or digit). Before, an agent config took
`site: plant.1`, `agent: -a` or a device `pump.1` (a gateway `--site plant.1`); the
process started, announced itself and its devices, and every task for them was
refused with 422, the names shown in `tme agent list` and `tme device list` but never
usable."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tme.agents.agent_config import parse_agent_config
from tme.cli.main import app
from tme.errors import ConfigError
from tme.schemas import Target


def test_names_the_api_would_refuse_are_refused_each_by_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(
            {
                "site": "plant.1",
                "agent": "-a",
                "gateway": "gw.1",
                "devices": {"pump.1": {"driver": "builtin"}, "ok_pump-2": {"driver": "builtin"}},
            }
        )
    message = info.value.message
    for key in ("site: 'plant.1'", "agent: '-a'", "gateway: 'gw.1'", "devices.pump.1: 'pump.1'"):
        assert key in message, message
    assert "ok_pump-2" not in message
    assert "letters, digits, - and _" in message


def test_the_names_an_agent_takes_are_the_ones_a_task_can_target() -> None:
    config = parse_agent_config(
        {"site": "plant-1", "agent": "skid_a", "devices": {"Pump1": {"driver": "builtin"}}}
    )
    Target.model_validate({"site": config.site, "agent": config.agent, "device": "Pump1"})


@pytest.mark.parametrize("option", ["--site", "--name"])
def test_a_gateway_name_the_api_would_refuse_is_refused_in_one_line(option: str) -> None:
    args = ["gateway", "--site", "plant-1", "--broker", "memory://", option, "plant.1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option} 'plant.1':"), result.stderr
