"""The fleet's checks and warnings through the SDK and the CLI: a device's serial
command limits in `tme device list` and `client.fleet.devices()`, a task refused
against what its agent published, a warning for an agent never seen on stderr."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

import tme
from tme.cli.main import app
from tme.cli.output import console
from tme.controller.event_apply import apply_presence
from tme.controller.store.models import Device
from tme.drivers.profile import load_profile
from tme.errors import ValidationError
from tme.fleet_schemas import ArgPublic
from tme.protocol import Presence

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


def test_a_task_outside_what_the_agent_published_is_refused(live_url: str, meter) -> None:
    target = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}
    with tme.Client(live_url) as client, pytest.raises(ValidationError) as info:
        client.tasks.create(
            name="too high", op="serial.command", target=target,
            params={"command": "set_voltage", "args": [31]},
        )  # fmt: skip
    assert [e["field"] for e in info.value.field_errors] == ["params.args.0"]
    result = runner.invoke(
        app,
        ["task", "create", "--url", live_url, "--name", "x", "--op", "serial.command",
         "--site", "plant-1", "--agent", "lab-c", "--device", "meter1",
         "--param", "command=output", "--param", "args=[MAYBE]"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "params.args.0" in result.stderr and "'MAYBE'" in result.stderr


def test_a_task_for_an_agent_never_seen_prints_a_warning(live_url: str, meter) -> None:
    result = runner.invoke(
        app,
        ["task", "create", "--url", live_url, "--name", "x", "--op", "noop",
         "--site", "plant-1", "--agent", "lab-d"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().isdigit()  # the id alone, for scripts
    assert "warning: task" in result.stderr
    assert "agent 'lab-d' has never been seen at site 'plant-1'" in result.stderr
    with tme.Client(live_url) as client:
        target = {"site": "plant-1", "agent": "lab-d"}
        task = client.tasks.create(name="y", op="noop", target=target)
    assert "never been seen" in task.warnings[0]


def test_the_demo_seed_takes_its_overspeed_example_refused_at_create(
    live_url: str, app_engine: Any
) -> None:
    """`tme demo` restarted on its data knows pump1's limits from the last run."""
    from tme.cli.demo import EXAMPLE_TASKS, seed_examples

    devices = [
        {"name": name, "profile": profile, "points": load_profile(PROFILES / f"{profile}.yaml")
         .public_points()}
        for name, profile in (("pump1", "pump"), ("tank1", "tank"))
    ]  # fmt: skip
    with Session(app_engine) as session:
        presence = Presence(site="plant-1", agent="skid-a", state="online", devices=devices)
        apply_presence(session, presence)
        session.commit()
    ids = seed_examples(live_url, "plant-1")
    assert len(ids) == len(EXAMPLE_TASKS) - 1


def test_a_device_locked_out_or_not_answering_shows_in_the_sdk_the_cli_and_task_warnings(
    live_url: str, app_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = load_profile(PROFILES / "instrument.yaml").public_points()
    lockout = {"by": "alice", "reason": "recalibration", "at": "2026-12-07T06:00:00+00:00"}
    link = {"state": "down", "since": "2026-12-07T06:01:00+00:00", "error": "port closed"}
    device = {
        "name": "meter1", "profile": "instrument", "points": points,
        "lockout": lockout, "link": link,
    }  # fmt: skip
    with Session(app_engine) as session:
        presence = Presence(site="plant-1", agent="lab-c", state="online", devices=[device])
        apply_presence(session, presence)
        session.commit()
    target = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}
    with tme.Client(live_url) as client:
        (shown,) = client.fleet.devices(site="plant-1")
        assert shown.lockout is not None and shown.lockout.reason == "recalibration"
        assert shown.link is not None and shown.link.state == "down"
        set_voltage = {"command": "set_voltage", "args": [5]}
        changing = client.tasks.create(
            name="set", op="serial.command", target=target, params=set_voltage
        )
        reading = client.tasks.create(
            name="id", op="serial.command", target=target, params={"command": "identify"}
        )
    assert [w for w in changing.warnings if "locked out at its agent by alice" in w]
    # a read-only command still runs on a locked-out device; that meter1 stopped
    # answering its agent is said to both
    assert not [w for w in reading.warnings if "locked out" in w]
    for task in (changing, reading):
        assert [w for w in task.warnings if "did not answer its agent's last operation" in w]
        assert [w for w in task.warnings if "port closed" in w]
    monkeypatch.setattr(console, "width", 240)
    result = runner.invoke(app, ["device", "list", "--url", live_url])
    assert result.exit_code == 0, result.output
    assert "Locked out at their agents" in result.stdout
    assert "recalibration" in result.stdout and "alice" in result.stdout
    assert "Not answering their agents" in result.stdout and "port closed" in result.stdout


def test_the_demo_seed_creates_its_examples_once_per_database(live_url: str) -> None:
    # `tme demo` started again on its data added another copy of every example each time.
    from tme.cli.demo import EXAMPLE_TASKS, seed_examples

    first = seed_examples(live_url, "plant-1")
    assert len(first) >= len(EXAMPLE_TASKS) - 1
    assert seed_examples(live_url, "plant-1") == []
    with tme.Client(live_url) as client:
        assert len(list(client.tasks.list())) == len(first)


def _publish_skid(app_engine: Any, **pump1: Any) -> None:
    """skid-a's presence as the agent describes pump1 (with `pump1`'s extra settings)
    and tank1, built from an agent config."""
    from tme.agents.agent_config import parse_agent_config
    from tme.agents.devices import build_devices

    bus = {"driver": "modbus_tcp", "connection": {"host": "127.0.0.1", "port": 5020}}
    config = parse_agent_config(
        {
            "site": "plant-1",
            "agent": "skid-a",
            "devices": {
                "pump1": {**bus, "unit": 1, "profile": str(PROFILES / "pump.yaml"), **pump1},
                "tank1": {**bus, "unit": 2, "profile": str(PROFILES / "tank.yaml")},
            },
        }
    )
    devices = build_devices(config.devices).describe()
    with Session(app_engine) as session:
        presence = Presence(site="plant-1", agent="skid-a", state="online", devices=devices)
        apply_presence(session, presence)
        session.commit()


def test_the_cli_shows_step_limits_safe_values_and_interlocks(
    live_url: str, app_engine: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the agent describes its devices (built from an agent config with an
    interlock): the limits column has step and safe value, a table the interlocks."""
    interlock = {
        "point": "run",
        "requires": {"device": "tank1", "point": "level", "below": 95},
        "why": "tank nearly full",
    }
    _publish_skid(app_engine, interlocks=[interlock])
    monkeypatch.setattr(console, "width", 240)  # one table row a line
    result = runner.invoke(app, ["device", "list", "--url", live_url])
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.split("│")] for line in result.stdout.splitlines()]
    limits = {row[4]: row[-2] for row in rows if len(row) > 9 and row[3] == "pump1"}
    assert (limits["speed_setpoint"], limits["run"]) == ("0..3000, safe 0", "safe false")
    interlocks = [row[1:-1] for row in rows if len(row) == 7]
    assert interlocks == [
        ["plant-1", "skid-a", "pump1", "run", "tank1.level below 95 (tank nearly full)"]
    ]
    assert "Interlocks (read by the agent just before each change" in result.stdout


def test_a_device_its_agent_stops_on_link_loss_says_so_in_the_api_and_the_cli(
    live_url: str, app_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's setting reaches the controller in its presence: the API has it on the
    device, `tme device list` a table of such devices; a device without it has null."""
    _publish_skid(app_engine, stop_on_link_loss_s=300)
    with tme.Client(live_url) as client:
        found = {d.name: d.stop_on_link_loss_s for d in client.fleet.devices(site="plant-1")}
    assert found == {"pump1": 300.0, "tank1": None}
    monkeypatch.setattr(console, "width", 240)  # one table row a line
    result = runner.invoke(app, ["device", "list", "--url", live_url])
    assert result.exit_code == 0, result.output
    assert "Stopped by their agents on link loss" in result.stdout
    rows = [[c.strip() for c in line.split("│")] for line in result.stdout.splitlines()]
    watched = [row[1:-1] for row in rows if len(row) == 7]
    assert watched == [["plant-1", "skid-a", "pump1", "300 s", "link up"]]


def _presence(app_engine: Any, agent: str, state: str, at: datetime, role: str = "agent") -> None:
    with Session(app_engine) as session:
        apply_presence(
            session, Presence(site="plant-1", agent=agent, state=state, at=at, role=role)
        )
        session.commit()


def test_a_lost_link_says_when_the_agent_stops_the_device_in_the_api_and_the_cli(
    live_url: str, app_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the controller loses the agent (or every gateway of its site), a device its
    agent stops on link loss says since when and when the agent stops it; a link back,
    or a device already stopped, says nothing."""
    _publish_skid(app_engine, stop_on_link_loss_s=300)
    # after the presence above (an older one is overtaken by it)
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    _presence(app_engine, "gw", "online", start, role="gateway")

    def lost() -> dict[str, Any]:
        with tme.Client(live_url) as client:
            return {d.name: d.link_lost for d in client.fleet.devices(site="plant-1")}

    assert lost() == {"pump1": None, "tank1": None}
    _presence(app_engine, "skid-a", "offline", start + timedelta(minutes=1))
    pump1 = lost()["pump1"]
    assert pump1 is not None and lost()["tank1"] is None  # tank1 is never stopped on it
    assert (pump1.since, pump1.stops_at) == (
        start + timedelta(minutes=1), start + timedelta(minutes=6)
    )  # fmt: skip
    assert pump1.what == "agent skid-a offline"
    monkeypatch.setattr(console, "width", 300)  # one table row a line
    result = runner.invoke(app, ["device", "list", "--url", live_url])
    assert result.exit_code == 0, result.output
    since, stops = start + timedelta(minutes=1), start + timedelta(minutes=6)
    assert (
        f"agent skid-a offline since {since:%Y-%m-%d %H:%M:%S} UTC: its agent, if running,"
        f" stops it at about {stops:%H:%M:%S} UTC unless the link returns first"
    ) in result.stdout
    _presence(app_engine, "skid-a", "online", start + timedelta(minutes=2))
    assert lost()["pump1"] is None
    _presence(app_engine, "gw", "offline", start + timedelta(minutes=3), role="gateway")
    pump1 = lost()["pump1"]
    assert pump1 is not None and pump1.what == "gateway gw offline"
    assert pump1.stops_at == start + timedelta(minutes=8)
    with Session(app_engine) as session:
        device = session.exec(select(Device).where(Device.name == "pump1")).one()
        device.stopped = {"by": "agent skid-a (link loss)", "reason": "lost", "at": "now"}
        session.add(device)
        session.commit()
    assert lost()["pump1"] is None  # stopped already: nothing more to come
