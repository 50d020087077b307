"""Presence of an edge process: retained `online` on its state topic, `offline` as its will.

`online` is re-published on every (re)connect: if the connection dropped long enough
for the broker to publish the will, the retained state says offline until we say
otherwise. A graceful stop publishes `offline` itself, since DISCONNECT cancels the will.

The controller keeps the newest presence by its `at` (a late message must not undo a
newer one), so a will stamped when it was set, before the `online` it ends, was
ignored there: an agent killed or cut off stayed online in the API, the dashboard and
the metrics for good. Each connection attempt therefore gets one time, the `at` of its
will and of the `online` it announces, and for the same time the controller keeps the
offline: the will ends the connection that announced it. A later connection has a
later time, so its `online` counts again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Literal

from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import Presence, ProtocolError, utcnow
from tme.topics import state_topic

log = logging.getLogger(__name__)

Role = Literal["agent", "gateway"]


def gateway_of(topic: str) -> str:
    """The gateway whose state topic this is (tme/v1/<site>/<name>/state)."""
    parts = topic.split("/")
    return parts[3] if len(parts) == 5 else topic


def read_gateway_state(message: MqttMessage) -> Presence | None:
    """A gateway's retained presence as an agent reads it; None when there is none (an
    empty payload clears it: no gateway) or it is malformed (logged)."""
    if not message.payload:
        return None
    try:
        presence: Presence = Presence.from_json(message.payload)
    except ProtocolError as exc:
        log.warning("ignored a malformed gateway state on %s: %s", message.topic, exc.message)
        return None
    return presence


def presence_json(
    site: str,
    name: str,
    role: Role,
    state: Literal["online", "offline"],
    devices: list[dict[str, Any]],
    features: list[str] | None = None,
    at: datetime | None = None,
    upstream: bool | None = None,
) -> bytes:
    """A `Presence` message, encoded for the state topic (`at`: now unless given)."""
    message = Presence(
        site=site,
        agent=name,
        role=role,
        state=state,
        at=at or utcnow(),
        devices=devices,
        features=features or [],
        upstream=upstream,
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
        self._upstream: bool | None = None  # a gateway's: whether it reaches RabbitMQ
        # One announcement composed and published at a time: set_upstream (the gateway's
        # publisher thread) and a reconnect (paho's) must not publish a stale one last.
        self._announcing = threading.Lock()
        self._connection_at = utcnow()  # the current connection attempt's time

    def message(self, state: Literal["online", "offline"], at: datetime | None = None) -> bytes:
        """Devices, features and upstream are said while online; offline says nothing
        of them."""
        if state != "online":
            return presence_json(self._site, self._name, self._role, state, [], [], at)
        return presence_json(
            self._site,
            self._name,
            self._role,
            state,
            self._devices,
            self._features,
            at,
            self._upstream,
        )

    def set_devices(self, devices: list[dict[str, Any]]) -> None:
        """What `online` says of the devices from now on; said at once when connected
        (as of this connection's time: a later one would outlive its will)."""
        self._devices = devices
        if self.link.is_connected():
            self.announce_online()

    def set_upstream(self, upstream: bool) -> None:
        """A gateway's: whether it reaches RabbitMQ, said at once when it changed."""
        with self._announcing:
            if upstream == self._upstream:
                return
            self._upstream = upstream
            if self.link.is_connected():
                self._publish_online()

    def install(self) -> None:
        """Set the will and the hooks that stamp it and re-announce; call before the
        link starts."""
        self.new_connection()
        self.link.before_connect(self.new_connection)
        self.link.on_connected(self.announce_online)

    def new_connection(self) -> None:
        """Before a connection attempt: its time, and the will that says it ended."""
        self._connection_at = utcnow()
        self.link.set_will(self.topic, self.message("offline", self._connection_at))

    def announce_online(self) -> None:
        """Online, as of this connection's time (the will's)."""
        with self._announcing:
            self._publish_online()

    def _publish_online(self) -> None:
        online = self.message("online", self._connection_at)
        self.link.publish(self.topic, online, retain=True)

    def final(self) -> tuple[str, bytes]:
        """What MqttLink.stop publishes on a graceful stop."""
        return self.topic, self.message("offline")
