"""MQTT topics of protocol version 1: tme/v1/<site>/<agent>/<cmd|evt|state>.

Kept apart from tme.protocol (which re-exports them) so the device agent can name its
topics without importing pydantic: an idle agent holds no wire-message models.
"""

from __future__ import annotations


def cmd_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/cmd"


def evt_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/evt"


def state_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/state"
