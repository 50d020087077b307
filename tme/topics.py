"""MQTT topics of protocol version 1: tme/v1/<site>/<agent>/<cmd|evt|state>.

Kept apart from tme.protocol (which re-exports them): plain string functions with no
imports, for modules that name topics but never build a message.
"""

from __future__ import annotations


def cmd_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/cmd"


def evt_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/evt"


def state_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/state"
