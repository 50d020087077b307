"""GET /api/v1/devices: each device's points and serial commands as its agent
published them, each command argument's limits included. The fleet rows are what an
agent's presence leaves (apply_presence with the example profiles' public points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from tme.controller.event_apply import apply_presence
from tme.controller.store.models import Device
from tme.drivers.profile import load_profile
from tme.protocol import Presence

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "profiles"
PUMP = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}
METER = {"site": "plant-1", "agent": "lab-c", "device": "meter1"}
OLD_METER = {"site": "plant-1", "agent": "old-lab", "device": "meter0"}


def _published(engine: Any, site: str, agent: str, devices: dict[str, str]) -> None:
    """An agent's online presence with its devices, as tme.agents.devices describes them."""
    described = [
        {"name": name, "profile": profile, "points": load_profile(PROFILES / f"{profile}.yaml")
         .public_points()}
        for name, profile in devices.items()
    ]  # fmt: skip
    with Session(engine) as session:
        apply_presence(session, Presence(site=site, agent=agent, state="online", devices=described))
        session.commit()


@pytest.fixture
def fleet(app_engine: Any) -> None:
    _published(app_engine, "plant-1", "skid-a", {"pump1": "pump", "tank1": "tank"})
    _published(app_engine, "plant-1", "lab-c", {"meter1": "instrument"})
    # an agent older than published command arguments: its rows have no "args"
    old = [
        {"name": "set_voltage", "kind": "command", "type": "str", "unit": "V", "access": "rw",
         "min": None, "max": None},
        {"name": "level", "kind": "point", "type": "float32", "unit": "%", "access": "r",
         "min": None, "max": None},
    ]  # fmt: skip
    _published(app_engine, "plant-1", "old-lab", {})
    with Session(app_engine) as session:
        session.add(Device(site="plant-1", agent="old-lab", name="meter0", points=old))
        session.commit()


# --- what the fleet shows ------------------------------------------------------------


def test_devices_show_each_serial_commands_argument_limits(test_client, fleet) -> None:
    devices = {d["name"]: d for d in test_client.get("/api/v1/devices").json()}
    commands = {p["name"]: p for p in devices["meter1"]["points"]}
    assert commands["set_voltage"]["args"] == [
        {"type": "float", "min": 0, "max": 30, "choices": None, "pattern": None}
    ]
    assert commands["output"]["args"][0]["choices"] == ["ON", "OFF"]
    assert commands["identify"]["args"] == []  # takes none
    assert commands["set_voltage"]["kind"] == "command"
    old = {p["name"]: p for p in devices["meter0"]["points"]}
    assert old["set_voltage"]["args"] is None  # not published: unknown, not "none"
    pump = {p["name"]: p for p in devices["pump1"]["points"]}
    assert pump["speed_setpoint"]["args"] is None  # a point has none
    schema = test_client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["ArgPublic"]["properties"]) == {"type", "min", "max", "choices", "pattern"}
    assert "args" in schema["PointPublic"]["properties"]
