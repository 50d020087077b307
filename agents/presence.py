"""Presence of an edge process: retained `online` on its state topic, `offline` as its will.

`online` is re-published on every (re)connect: if the connection dropped long enough
for the broker to publish the will, the retained state says offline until we say
otherwise. A graceful stop publishes `offline` itself, since DISCONNECT cancels the will.
"""

from __future__ import annotations

from typing import Any, Literal

from tme.mqtt import MqttLink
from tme.protocol import Presence
from tme.topics import state_topic

Role = Literal["agent", "gateway"]


def presence_json(
    site: str,
    name: str,
    role: Role,
    state: Literal["online", "offline"],
    devices: list[dict[str, Any]],
    features: list[str] | None = None,
) -> bytes:
    """A `Presence` message, encoded for the state topic."""
    message = Presence(
        site=site, agent=name, role=role, state=state, devices=devices, features=features or []
    )
    return message.to_json()


class PresenceAnnouncer:
    def __init__(
        self,
        link: MqttLink,
        site: str,
        name: str,
        role: Role,
        devices: list[dict[str, Any]] | None = None,
        features: list[str] | None = None,
    ) -> None:
        self.link = link
        self.topic = state_topic(site, name)
        self._site, self._name, self._role = site, name, role
        self._devices = devices or []
        self._features = features or []

    def message(self, state: Literal["online", "offline"]) -> bytes:
        """Devices and features are said while online; offline says nothing of them."""
        online = state == "online"
        devices, features = (self._devices, self._features) if online else ([], [])
        return presence_json(self._site, self._name, self._role, state, devices, features)

    def install(self) -> None:
        """Set the will and the re-announce hook; call before the link starts."""
        self.link.set_will(self.topic, self.message("offline"))
        self.link.on_connected(self.announce_online)

    def announce_online(self) -> None:
        self.link.publish(self.topic, self.message("online"), retain=True)

    def final(self) -> tuple[str, bytes]:
        """What MqttLink.stop publishes on a graceful stop."""
        return self.topic, self.message("offline")
