"""Presence as the edge processes announce it: the protocol's `Presence` message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from tme.agents.presence import PresenceAnnouncer
from tme.protocol import Presence, decode_any, state_topic


class RecordingLink:
    """The part of MqttLink the announcer uses, recording what it was asked to do."""

    def __init__(self) -> None:
        self.will: tuple[str, bytes] | None = None
        self.published: list[tuple[str, bytes, bool]] = []
        self.hooks: list[object] = []
        self.before: list[Callable[[], None]] = []

    def set_will(self, topic: str, payload: bytes, retain: bool = True) -> None:
        self.will = (topic, payload)

    def before_connect(self, hook: Callable[[], None]) -> None:
        self.before.append(hook)

    def on_connected(self, hook: object) -> None:
        self.hooks.append(hook)

    def connect(self) -> None:
        """What MqttLink does on each connection attempt that succeeds."""
        for hook in self.before:
            hook()
        for hook in self.hooks:
            hook()  # type: ignore[operator]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.published.append((topic, payload, retain))


DEVICES = [{"name": "pump1", "profile": "pump", "points": [{"name": "°C", "min": 0.0}]}]


def test_online_is_a_retained_presence_with_the_devices() -> None:
    link = RecordingLink()
    announcer = PresenceAnnouncer(link, "s1", "a1", "agent", DEVICES)
    announcer.install()
    assert link.hooks == [announcer.announce_online]
    announcer.announce_online()
    [(topic, raw, retain)] = link.published
    message = decode_any(raw)
    assert isinstance(message, Presence) and topic == state_topic("s1", "a1") and retain
    assert (message.site, message.agent, message.role, message.state) == (
        "s1",
        "a1",
        "agent",
        "online",
    )
    assert message.devices == DEVICES and message.at.utcoffset() == timedelta(0)
    assert "°C".encode() in raw  # UTF-8 on the wire, not \\u escapes


def test_the_will_and_the_final_state_say_offline_without_devices() -> None:
    link = RecordingLink()
    announcer = PresenceAnnouncer(link, "s1", "gw", "gateway", DEVICES)
    announcer.install()
    assert link.will is not None
    topic, final = announcer.final()
    for raw in (link.will[1], final):
        message = Presence.from_json(raw)
        assert (message.role, message.state, message.devices) == ("gateway", "offline", [])
    assert topic == link.will[0] == state_topic("s1", "gw")


def test_each_connection_has_one_time_for_its_online_and_its_will() -> None:
    """The controller keeps the newest presence by its time: a will stamped before the
    online it ends (when it was set, at start) was ignored there, and an agent killed
    or cut off was shown online for good."""
    link = RecordingLink()
    announcer = PresenceAnnouncer(link, "s1", "a1", "agent", DEVICES)
    announcer.install()
    stamps = []
    for _connection in range(2):
        link.connect()
        assert link.will is not None
        online, will = Presence.from_json(link.published[-1][1]), Presence.from_json(link.will[1])
        assert (online.state, will.state) == ("online", "offline")
        assert online.at == will.at
        stamps.append(online.at)
    assert stamps[1] > stamps[0]
