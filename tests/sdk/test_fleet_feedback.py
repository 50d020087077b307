"""The fleet through the SDK and the CLI: a device's serial command limits in
`tme device list` and `client.fleet.devices()`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

import tme
from tme.cli.main import app
from tme.cli.output import console
from tme.controller.event_apply import apply_presence
from tme.drivers.profile import load_profile
from tme.protocol import Presence
from tme.schemas import ArgPublic

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "profiles"
runner = CliRunner()


@pytest.fixture
def meter(app_engine: Any) -> None:
    points = load_profile(PROFILES / "instrument.yaml").public_points()
    device = {"name": "meter1", "profile": "instrument", "points": points}
    with Session(app_engine) as session:
        presence = Presence(site="plant-1", agent="lab-c", state="online", devices=[device])
        apply_presence(session, presence)
        session.commit()


def test_the_sdk_and_the_cli_show_serial_command_limits(
    live_url: str, meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tme.Client(live_url) as client:
        (device,) = client.fleet.devices(site="plant-1")
    commands = {p.name: p for p in device.points}
    assert commands["set_voltage"].args == [ArgPublic(type="float", min=0, max=30)]
    assert commands["output"].limits() == "str ON|OFF"
    monkeypatch.setattr(console, "width", 240)  # one table row a line
    result = runner.invoke(app, ["device", "list", "--url", live_url])
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.split("│")] for line in result.stdout.splitlines()]
    limits = {row[4]: row[-2] for row in rows if len(row) > 4 and row[3] == "meter1"}
    assert (limits["set_voltage"], limits["output"], limits["identify"]) == (
        "float 0..30",
        "str ON|OFF",
        "",
    )
