"""An in-process broker with RabbitMQ's semantics, for the embedded mode and tests.

It models what TME relies on: topic exchanges, mandatory routing, durable
queues that outlive a bus, manual acks with requeue and a delivery counter, a
delivery limit, and dead-lettering to tme.dead with the original routing key.
Brokers are global, keyed by name, so a controller and a gateway in one
process that open the same memory:// URL share one broker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from tme.bus.base import Unroutable
from tme.bus.topic import topic_matches
from tme.errors import BusError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredMessage:
    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, object] = field(default_factory=dict)
    delivery_count: int = 0  # times it was returned to its queue


@dataclass
class MemoryQueue:
    name: str
    delivery_limit: int | None
    dead_letter_exchange: str | None
    messages: deque[StoredMessage] = field(default_factory=deque)


class MemoryBroker:
    """Exchanges, bindings and queues behind one lock; consumers wait on its condition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.changed = threading.Condition()
        self.exchanges: set[str] = set()
        self.bindings: dict[str, list[tuple[str, str]]] = {}  # exchange -> (pattern, queue)
        self.queues: dict[str, MemoryQueue] = {}
        self.stranded_dead_letters: list[StoredMessage] = []

    def declare_exchange(self, exchange: str) -> None:
        with self.changed:
            self.exchanges.add(exchange)
            self.bindings.setdefault(exchange, [])

    def declare_queue(
        self, queue: str, delivery_limit: int | None, dead_letter_exchange: str | None
    ) -> None:
        with self.changed:
            existing = self.queues.get(queue)
            if existing is None:
                self.queues[queue] = MemoryQueue(queue, delivery_limit, dead_letter_exchange)
                return
            # RabbitMQ answers PRECONDITION_FAILED to a redeclare with other arguments;
            # the AMQP bus then keeps a queue that differs only in its delivery limit.
            if existing.dead_letter_exchange != dead_letter_exchange or (
                None in (existing.delivery_limit, delivery_limit)
                and existing.delivery_limit != delivery_limit
            ):
                raise BusError(f"queue {queue!r} exists with different arguments")
            if existing.delivery_limit != delivery_limit:
                log.warning(
                    "queue %s keeps the delivery limit %s it was declared with (TME declares"
                    " it with %s now)",
                    queue,
                    existing.delivery_limit,
                    delivery_limit,
                )

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        with self.changed:
            self._require_exchange(exchange)
            if (pattern, queue) not in self.bindings[exchange]:
                self.bindings[exchange].append((pattern, queue))

    def delete_queue(self, queue: str) -> None:
        with self.changed:
            self.queues.pop(queue, None)
            for bindings in self.bindings.values():
                bindings[:] = [b for b in bindings if b[1] != queue]
            self.changed.notify_all()

    def publish(self, exchange: str, message: StoredMessage) -> None:
        """Route to every bound queue; Unroutable when none takes it (mandatory)."""
        with self.changed:
            self._require_exchange(exchange)
            targets = self._route(exchange, message.routing_key)
            if not targets:
                raise Unroutable(
                    f"no queue bound to {exchange!r} for {message.routing_key!r}",
                    details={"exchange": exchange, "routing_key": message.routing_key},
                )
            for queue in targets:
                self.queues[queue].messages.append(message)
            self.changed.notify_all()

    def take(self, queue: str) -> StoredMessage | None:
        """Pop the next message of `queue` (caller holds `changed`)."""
        found = self.queues.get(queue)
        if found is None:
            raise BusError(f"queue {queue!r} does not exist")
        return found.messages.popleft() if found.messages else None

    def requeue(self, queue: str, message: StoredMessage) -> None:
        """Return a message after a failed handler; dead-letter it past the delivery limit."""
        with self.changed:
            found = self.queues.get(queue)
            if found is None:
                return
            returned = replace(message, delivery_count=message.delivery_count + 1)
            if found.delivery_limit is not None and returned.delivery_count > found.delivery_limit:
                self._dead_letter(found, returned, "delivery_limit")
            else:
                found.messages.appendleft(returned)
            self.changed.notify_all()

    def reject(self, queue: str, message: StoredMessage) -> None:
        with self.changed:
            found = self.queues.get(queue)
            if found is not None:
                self._dead_letter(found, message, "rejected")
            self.changed.notify_all()

    def _dead_letter(self, queue: MemoryQueue, message: StoredMessage, reason: str) -> None:
        if queue.dead_letter_exchange is None:
            return  # like RabbitMQ: no dead-letter exchange means the message is dropped
        headers = dict(message.headers)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.name)
        dead = replace(message, headers=headers, delivery_count=0)
        targets = self._route(queue.dead_letter_exchange, message.routing_key)
        if not targets:
            # At-least-once dead-lettering never drops a message it cannot route yet.
            self.stranded_dead_letters.append(dead)
        for target in targets:
            self.queues[target].messages.append(dead)

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        bound = self.bindings.get(exchange, [])
        return sorted({q for pattern, q in bound if topic_matches(pattern, routing_key)})

    def _require_exchange(self, exchange: str) -> None:
        if exchange not in self.exchanges:
            raise BusError(f"exchange {exchange!r} does not exist; start the bus first")


_brokers: dict[str, MemoryBroker] = {}
_brokers_lock = threading.Lock()


def broker_for(url: str) -> MemoryBroker:
    """The broker named by memory://name (memory:// alone is the default broker)."""
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/") or "default"
    with _brokers_lock:
        broker = _brokers.get(name)
        if broker is None:
            broker = _brokers[name] = MemoryBroker(name)
        return broker


def reset_memory_brokers() -> None:
    """Forget every memory broker and its messages (tests)."""
    with _brokers_lock:
        _brokers.clear()
