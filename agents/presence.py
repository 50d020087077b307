"""Presence of an edge process: retained `online` on its state topic, `offline` as its will.

`online` is re-published on every (re)connect: if the connection dropped long enough
for the broker to publish the will, the retained state says offline until we say
otherwise. A graceful stop publishes `offline` itself, since DISCONNECT cancels the will.
"""

from __future__ import annotations

from typing import Any, Literal

from tme.mqtt import MqttLink
from tme.protocol import Presence, state_topic

Role = Literal["agent", "gateway"]


class PresenceAnnouncer:
    def __init__(
        self,
        link: MqttLink,
        site: str,
        name: str,
        role: Role,
        devices: list[dict[str, Any]] | None = None,
    ) -> None:
        self.link = link
        self.topic = state_topic(site, name)
        self._site, self._name, self._role = site, name, role
        self._devices = devices or []

    def message(self, state: Literal["online", "offline"]) -> bytes:
        return Presence(
            site=self._site,
            agent=self._name,
            role=self._role,
            state=state,
            devices=self._devices if state == "online" else [],
        ).to_json()

    def install(self) -> None:
        """Set the will and the re-announce hook; call before the link starts."""
        self.link.set_will(self.topic, self.message("offline"))
        self.link.on_connected(self.announce_online)

    def announce_online(self) -> None:
        self.link.publish(self.topic, self.message("online"), retain=True)

    def final(self) -> tuple[str, bytes]:
        """What MqttLink.stop publishes on a graceful stop."""
        return self.topic, self.message("offline")
