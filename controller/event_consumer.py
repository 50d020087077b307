"""Consume tme.events: decode, apply in one transaction, then ack.

Deliveries come in batches (whatever has arrived, up to MAX_BATCH): their events are
applied in transactions of up to MAX_BATCH events and all of them are acked after the
last commit, so the database sees one commit per batch instead of one per event. A
delivery is one event, one presence or a gateway's EventBatch (its events in order).
A message that can never be applied (not JSON, wrong version or shape, a batch with
an event of another site) is dead-lettered with `Reject`, as a whole; a database
failure raises, so the bus redelivers the batch (applying is idempotent by event id)
and, past the delivery limit, dead-letters what keeps failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from tme.bus.base import Bus, Consumer, Delivery, Reject
from tme.controller.event_apply import Applied, apply_messages
from tme.controller.store.db import session_scope
from tme.controller.store.sqlite_gate import pipeline_writes
from tme.protocol import EVENTS_EXCHANGE, Event, Presence, ProtocolError, decode_events

log = logging.getLogger("tme.events")

EVENTS_QUEUE = "tme.controller.events"
MAX_BATCH = 200  # deliveries taken at once, events per transaction; never waited for

Listener = Callable[[Event | Presence], None]
# Told of each applied batch with what applying it found (the batch's runs).
BatchListener = Callable[[list[Event | Presence], Applied], None]


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
        self.batch_listeners: list[BatchListener] = []
        # Called after a commit that left finished runs for the workflow pass
        # (the controller wakes its scheduling thread).
        self.on_to_settle: Callable[[], None] | None = None
        self._consumer: Consumer | None = None

    def start(self) -> None:
        if self.queue == EVENTS_QUEUE and self.binding == "#":
            self.bus.declare_events_queue(EVENTS_QUEUE)
        else:
            self.bus.declare_queue(self.queue, EVENTS_EXCHANGE, self.binding)
        self._consumer = self.bus.consume_batch(
            self.queue, self.handle_batch, prefetch=self.prefetch, max_batch=MAX_BATCH
        )

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None

    def handle(self, delivery: Delivery) -> None:
        """One delivery: apply it in its own transaction; raise Reject if malformed."""
        (outcome,) = self.handle_batch([delivery])
        if outcome is not None:
            raise outcome

    def handle_batch(self, deliveries: list[Delivery]) -> list[Reject | None]:
        """Apply the well-formed messages in one transaction; one outcome per delivery."""
        outcomes: list[Reject | None] = []
        messages: list[Event | Presence] = []
        for delivery in deliveries:
            decoded = _decode(delivery)
            if isinstance(decoded, Reject):
                outcomes.append(decoded)
            else:
                outcomes.append(None)
                messages.extend(decoded)
        for start in range(0, len(messages), MAX_BATCH):
            self._apply(messages[start : start + MAX_BATCH])
        return outcomes

    def _apply(self, messages: list[Event | Presence]) -> None:
        with pipeline_writes(), session_scope(self.engine) as session:
            applied = apply_messages(session, messages)
        if applied.to_settle and self.on_to_settle is not None:
            self.on_to_settle()
        for batch_listener in self.batch_listeners:
            _tell(batch_listener, messages, applied)
        for message in messages:
            for listener in self.listeners:
                _tell(listener, message)


def _tell(listener: Callable[..., None], *what: Any) -> None:
    try:
        listener(*what)
    except Exception:  # a listener (dashboard, metrics) never blocks the ack
        log.exception("event listener failed")


def _decode(delivery: Delivery) -> list[Event | Presence] | Reject:
    try:
        return decode_events(delivery.body)
    except ProtocolError as exc:
        log.warning("dead-lettering a malformed event (%s): %s", delivery.routing_key, exc)
        return Reject(str(exc))
