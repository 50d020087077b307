"""A fleet for the rollout tests: devices their agents published, as presence leaves
them (apply_presence with the example profiles' public points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.event_apply import apply_presence
from tme.drivers.profile import load_profile
from tme.protocol import Presence

PROFILES = Path(__file__).resolve().parents[1] / "configs" / "profiles"


def publish(
    engine: Engine, site: str, agent: str, devices: dict[str, str], **extra: dict[str, Any]
) -> None:
    """Agent `agent` of `site` online with `devices` (name -> profile); `extra` adds
    fields to a device's description (a lockout)."""
    described = [
        {
            "name": name,
            "profile": profile,
            "points": load_profile(PROFILES / f"{profile}.yaml").public_points(),
            **extra.get(name, {}),
        }
        for name, profile in devices.items()
    ]
    with Session(engine) as session:
        apply_presence(session, Presence(site=site, agent=agent, state="online", devices=described))
        session.commit()


def plant(engine: Engine, site: str = "plant-1") -> None:
    """Four pumps on two skids, a tank, and a meter."""
    publish(engine, site, "skid-a", {"pump2": "pump", "pump1": "pump", "tank1": "tank"})
    publish(engine, site, "skid-b", {"pump4": "pump", "pump3": "pump"})
    publish(engine, site, "lab-c", {"meter1": "instrument"})


def speed(value: int = 1200, **more: Any) -> dict[str, Any]:
    """A rollout setting the pumps' speed, `more` overriding its fields."""
    return {
        "name": "pump speed",
        "op": "modbus.write",
        "params": {"point": "speed_setpoint", "value": value},
        "match": {"site": "plant-1", "profile": "pump"},
        **more,
    }
