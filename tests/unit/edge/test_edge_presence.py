"""Presence is written without the pydantic model; it must stay exactly that model."""

from __future__ import annotations

import json

from tme.agents.presence import PROTOCOL_VERSION, presence_json
from tme.protocol import PROTOCOL_VERSION as WIRE_VERSION
from tme.protocol import Presence


def test_presence_json_is_the_protocol_model_byte_for_byte() -> None:
    devices = [{"name": "pump1", "profile": "pump", "points": [{"name": "°C", "min": 0.0}]}]
    raw = presence_json("s1", "a1", "agent", "online", devices)
    message = Presence.from_json(raw)
    assert (message.site, message.agent, message.role, message.state) == (
        "s1",
        "a1",
        "agent",
        "online",
    )
    assert message.devices == devices and message.at.utcoffset() is not None
    assert message.to_json() == raw  # same fields, order, time format and escaping


def test_presence_json_has_every_field_of_the_model() -> None:
    raw = presence_json("s1", "gw", "gateway", "offline", [])
    assert set(json.loads(raw)) == set(Presence.model_fields)
    assert PROTOCOL_VERSION == WIRE_VERSION
