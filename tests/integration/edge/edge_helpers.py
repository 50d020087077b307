"""Helpers for edge tests against the real Mosquitto: unique names, commands, watchers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import Command, Event, EventBatch, Presence, cmd_topic, decode_any


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Watcher:
    """Collects decoded messages from MQTT topics; waits on a condition with a deadline."""

    def __init__(self, url: str, topics: list[str]) -> None:
        self.messages: list[Event | Presence] = []
        self.raw: list[MqttMessage] = []
        self._cond = threading.Condition()
        self.link = MqttLink(url, unique("tme-test-watch"))
        for topic in topics:
            self.link.subscribe(topic, self._take)

    def _take(self, message: MqttMessage) -> None:
        with self._cond:
            self.raw.append(message)
            if message.payload:
                decoded = decode_any(message.payload)
                if isinstance(decoded, EventBatch):  # an agent packing for its gateway
                    self.messages.extend(decoded.events)
                else:
                    self.messages.append(decoded)  # type: ignore[arg-type]
            self._cond.notify_all()

    def events(self, command_id: str) -> list[Event]:
        with self._cond:
            return [m for m in self.messages if isinstance(m, Event) and m.command_id == command_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                pytest.fail(
                    f"timed out waiting; saw {[getattr(m, 'type', m) for m in self.messages]}"
                )

    def wait_final(self, command_id: str, count: int = 1, timeout: float = 15.0) -> list[Event]:
        self.wait_for(
            lambda: (
                sum(
                    e.type in {"succeeded", "failed", "timed_out", "rejected", "expired"}
                    for e in self.events(command_id)
                )
                >= count
            ),
            timeout,
        )
        return self.events(command_id)


def send(link: MqttLink, command: Command) -> None:
    assert link.publish_wait(cmd_topic(command.site, command.agent), command.to_json(), 10)
