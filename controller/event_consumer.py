"""Consume tme.events: decode, apply in one transaction, then ack.

A message that can never be applied (not JSON, wrong version or shape) is
dead-lettered with `Reject`; a database failure raises, so the bus redelivers
the message and, past the delivery limit, dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from tme.bus.base import Bus, Consumer, Delivery, Reject
from tme.controller.event_apply import apply_event, apply_presence
from tme.controller.store.db import session_scope
from tme.protocol import EVENTS_EXCHANGE, Event, Presence, ProtocolError, decode_any

log = logging.getLogger("tme.events")

EVENTS_QUEUE = "tme.controller.events"

Listener = Callable[[Event | Presence], None]


class EventConsumer:
    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        prefetch: int = 200,
        queue: str = EVENTS_QUEUE,
        binding: str = "#",
    ) -> None:
        """`queue` and `binding` default to the controller's queue taking every event."""
        self.engine = engine
        self.bus = bus
        self.prefetch = prefetch
        self.queue = queue
        self.binding = binding
        self.listeners: list[Listener] = []
        self._consumer: Consumer | None = None

    def start(self) -> None:
        if self.queue == EVENTS_QUEUE and self.binding == "#":
            self.bus.declare_events_queue(EVENTS_QUEUE)
        else:
            self.bus.declare_queue(self.queue, EVENTS_EXCHANGE, self.binding)
        self._consumer = self.bus.consume(self.queue, self.handle, prefetch=self.prefetch)

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None

    def handle(self, delivery: Delivery) -> None:
        try:
            message = decode_any(delivery.body)
        except ProtocolError as exc:
            log.warning("dead-lettering a malformed event (%s): %s", delivery.routing_key, exc)
            raise Reject(str(exc)) from exc
        if not isinstance(message, Event | Presence):
            log.warning("dead-lettering a %s on the events exchange", message.kind)
            raise Reject(f"unexpected {message.kind} on the events exchange")
        with session_scope(self.engine) as session:
            if isinstance(message, Event):
                apply_event(session, message)
            else:
                apply_presence(session, message)
        for listener in self.listeners:
            try:
                listener(message)
            except Exception:  # a listener (dashboard, metrics) never blocks the ack
                log.exception("event listener failed")
