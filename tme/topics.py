"""MQTT topics of protocol version 1: tme/v1/<site>/<agent>/<cmd|evt|state>.

Kept apart from tme.protocol (which re-exports them): plain string functions with no
imports, for modules that name topics but never build a message.
"""

from __future__ import annotations

import re

# A site, agent or device name, as the API takes it in a task's target (tme.schemas.Name):
# a topic level and a word of a RabbitMQ routing key, with no wildcard or separator.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
NAME_RULE = "1 to 64 letters, digits, - and _, starting with a letter or digit"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a site, agent or device name (None: it can)."""
    if re.fullmatch(NAME_PATTERN, name):
        return None
    return not_a_name(name)


def not_a_name(name: str) -> str:
    """What is said of a site, agent or device name that does not match NAME_PATTERN."""
    return f"{name!r} is not a name a task can target ({NAME_RULE})"


def cmd_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/cmd"


def evt_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/evt"


def state_topic(site: str, agent: str) -> str:
    return f"tme/v1/{site}/{agent}/state"
