"""Consume tme.events: decode, apply in one transaction, then ack.

Deliveries come in batches (whatever has arrived, up to MAX_BATCH): their events are
applied in transactions of up to MAX_BATCH events and all of them are acked after the
last commit, so the database sees one commit per batch instead of one per event. A
delivery is one event, one presence or a gateway's EventBatch (its events in order).
A message that can never be applied (not JSON, wrong version or shape, a batch with
an event of another site) is dead-lettered with `Reject`, as a whole. A transaction
that fails is tried again one delivery at a time, so only a delivery that fails alone
is requeued (and dead-lettered past the delivery limit) while the good ones around it
are applied and acked. While the database itself is unreachable, or refuses writes (a
read-only server: store/read_only.py), the batch is held, unacked, and tried again
until it takes them (applying is idempotent by event id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from tme.bus.base import Bus, Consumer, Delivery, Reject
from tme.bus.holding import HeldWrite
from tme.controller.event_apply import Applied, apply_messages
from tme.controller.store.conflicts import in_transaction
from tme.controller.store.read_only import takes_writes
from tme.controller.store.sqlite_gate import pipeline_writes
from tme.failure_log import FailureLog
from tme.protocol import Event, Presence, ProtocolError, decode_events

log = logging.getLogger("tme.events")

EVENTS_QUEUE = "tme.controller.events"
MAX_BATCH = 200  # deliveries taken at once, events per transaction; never waited for
# While the database does not answer, or answers but is read-only, it is probed (is
# its next transaction writable?) this often, and the events held are applied as soon
# as it takes writes: within about a second of its return. A
# failed probe, like a failed apply, costs about half a millisecond against a server
# that refuses connections (measured on loopback); against a host that does not answer
# it waits connect_timeout, which paces it. (A backoff up to 10 s instead left events
# waiting up to 10 s after the database was back.)
PROBE_S = 0.5
# A database that takes writes by the probe but fails the apply (a disk full) is tried again
# this often (doubling): a whole transaction, sooner, would only fail sooner.
OUTAGE_PAUSE_MIN_S = 0.5
OUTAGE_PAUSE_MAX_S = 10.0

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
        self.outage = FailureLog(
            log,
            "applying events",
            meanwhile=(
                "the database is unreachable or refuses writes: events are held, unacked,"
                " until it takes them"
            ),
        )
        self.hold = HeldWrite(
            self.outage,
            _database_unreachable,
            pause_min_s=OUTAGE_PAUSE_MIN_S,
            pause_max_s=OUTAGE_PAUSE_MAX_S,
            answers=self._database_takes_writes,
            probe_s=PROBE_S,
        )

    @property
    def probing(self) -> bool:
        """Whether it waits for a database that does not answer or take writes."""
        return self.hold.probing

    @property
    def returns_noticed(self) -> int:
        """How often probing found the database back."""
        return self.hold.returns_noticed

    def declare(self) -> None:
        """Declare this consumer's queue and binding (idempotent; also the readiness
        check's question to the broker)."""
        self.bus.declare_events_queue(self.queue, self.binding)

    def start(self) -> None:
        self.declare()
        self._consumer = self.bus.consume_batch(
            self.queue, self.handle_batch, prefetch=self.prefetch, max_batch=MAX_BATCH
        )

    def stop(self) -> None:
        self.hold.stop()  # a batch held through an outage is requeued, not waited for
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None

    def handle(self, delivery: Delivery) -> None:
        """One delivery: apply it in its own transaction; raise Reject if malformed."""
        (outcome,) = self.handle_batch([delivery])
        if outcome is not None:
            raise outcome

    def handle_batch(self, deliveries: list[Delivery]) -> list[Exception | None]:
        """Apply the well-formed messages in few transactions; one outcome per delivery.

        When a transaction fails, its deliveries are applied again one at a time, so only
        the ones that fail are requeued (and dead-lettered past the delivery limit); the
        good ones around them are applied and acked. A lost database fails them all.
        """
        outcomes: list[Exception | None] = []
        decoded: dict[int, list[Event | Presence]] = {}
        for index, delivery in enumerate(deliveries):
            messages = _decode(delivery)
            outcomes.append(messages if isinstance(messages, Reject) else None)
            if not isinstance(messages, Reject):
                decoded[index] = messages
        for group in _transactions(decoded):
            try:
                self._apply_held([m for index in group for m in decoded[index]])
            except Exception as exc:
                if len(group) == 1 or _database_unreachable(exc):
                    _fail(outcomes, group, exc)
                else:
                    log.warning("a batch of %d failed (%s); one at a time", len(group), exc)
                    self._apply_one_by_one(group, decoded, outcomes)
        return outcomes

    def _apply_one_by_one(
        self,
        group: list[int],
        decoded: dict[int, list[Event | Presence]],
        outcomes: list[Exception | None],
    ) -> None:
        for position, index in enumerate(group):
            try:
                self._apply_held(decoded[index])
            except Exception as exc:
                if _database_unreachable(exc):
                    _fail(outcomes, group[position:], exc)
                    return
                log.exception("could not apply a delivery of %d messages", len(decoded[index]))
                outcomes[index] = exc

    def _apply_held(self, messages: list[Event | Presence]) -> None:
        """Apply; while the database is unreachable, keep the deliveries and try again
        (tme.bus.holding): requeued instead, each try would spend one of the queue's
        redeliveries within milliseconds, and a database restart would dead-letter every
        result arriving during it. On stop the last error is raised and the bus
        requeues them."""
        self.hold.run(lambda: self._apply_all(messages))

    def _database_takes_writes(self) -> bool:
        """Whether the database answers now and its next transaction may write."""
        try:
            with self.engine.connect() as connection:
                return takes_writes(connection)
        except Exception:  # whatever fails, the database does not answer
            return False

    def _apply_all(self, messages: list[Event | Presence]) -> None:
        for start in range(0, len(messages), MAX_BATCH):
            self._apply(messages[start : start + MAX_BATCH])

    def _apply(self, messages: list[Event | Presence]) -> None:
        # A deadlock lost to concurrent work (a status report, the scheduling pass) is
        # applied again at once: it is no outage, and applying is idempotent.
        began = time.perf_counter()
        with pipeline_writes():
            applied = in_transaction(self.engine, lambda session: apply_messages(session, messages))
        applied.seconds = time.perf_counter() - began
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


def _transactions(decoded: dict[int, list[Event | Presence]]) -> list[list[int]]:
    """Deliveries (by index) grouped into transactions of up to MAX_BATCH messages; a
    delivery is never split between groups (one larger than that is a group alone)."""
    groups: list[list[int]] = []
    size = 0
    for index, messages in decoded.items():
        if not groups or size + len(messages) > MAX_BATCH:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += len(messages)
    return groups


def _database_unreachable(error: Exception) -> bool:
    """Whether the database itself failed (not one message), unreachable or refusing
    writes (translated where it enters: store/read_only.py): retrying each delivery
    alone would fail each the same way, slowly."""
    return isinstance(error, OperationalError | InterfaceError)


def _fail(outcomes: list[Exception | None], indexes: list[int], error: Exception) -> None:
    for index in indexes:
        outcomes[index] = error


def _decode(delivery: Delivery) -> list[Event | Presence] | Reject:
    """The messages of a delivery, or why it is dead-lettered: malformed, or speaking for
    another site than its routing key's (`<site>.<agent>.<kind>`, `<site>.gateway.batch`),
    which is all a site gateway's RabbitMQ user may publish under."""
    try:
        messages = decode_events(delivery.body)
    except ProtocolError as exc:
        log.warning("dead-lettering a malformed event (%s): %s", delivery.routing_key, exc)
        return Reject(str(exc))
    except Exception as exc:  # whatever a message does, the consumer goes on
        log.exception("dead-lettering an event that cannot be decoded (%s)", delivery.routing_key)
        return Reject(f"cannot be decoded ({type(exc).__name__})")
    sender = delivery.routing_key.split(".", 1)[0]
    strangers = sorted({message.site for message in messages if message.site != sender})
    if strangers:
        why = f"routing key {delivery.routing_key!r} carries messages of site(s) {strangers}"
        log.warning("dead-lettering a misrouted event: %s", why)
        return Reject(why)
    return messages
