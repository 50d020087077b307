"""Helpers for edge tests against the real Mosquitto and RabbitMQ: unique names,
commands, watchers, a tap of the events a gateway forwards."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tme.bus import Bus, Delivery
from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import (
    EVENTS_EXCHANGE,
    Command,
    Event,
    EventBatch,
    Presence,
    cmd_topic,
    decode_any,
    decode_events,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def journal_locked(path: Path) -> Iterator[None]:
    """The journal's write lock held by another connection (a backup, the sqlite3
    shell) until the block ends: the gateway's writes fail past their busy timeout."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


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
                    e.type
                    in {"succeeded", "failed", "timed_out", "rejected", "expired", "canceled"}
                    for e in self.events(command_id)
                )
                >= count
            ),
            timeout,
        )
        return self.events(command_id)


def send(link: MqttLink, command: Command) -> None:
    assert link.publish_wait(cmd_topic(command.site, command.agent), command.to_json(), 10)


class EventTap:
    """A queue on tme.events bound to one site; collects what the gateway forwarded."""

    def __init__(self, bus: Bus, site: str) -> None:
        self.queue = unique("tme.test.events")
        self.items: list[Event | Presence] = []
        self._cond = threading.Condition()
        bus.declare_queue(self.queue, EVENTS_EXCHANGE, f"{site}.#")
        self.consumer = bus.consume(self.queue, self._take)

    def _take(self, delivery: Delivery) -> None:
        with self._cond:
            self.items.extend(decode_events(delivery.body))
            self._cond.notify_all()

    def events(self, command_id: str) -> list[Event]:
        with self._cond:
            return [i for i in self.items if isinstance(i, Event) and i.command_id == command_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                pytest.fail(f"timed out; tap saw {[getattr(i, 'type', i) for i in self.items]}")

    def wait_type(self, command_id: str, type_: str, timeout: float = 20.0) -> list[Event]:
        self.wait_for(lambda: any(e.type == type_ for e in self.events(command_id)), timeout)
        return self.events(command_id)
