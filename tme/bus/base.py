"""The message bus contract between controller and gateways (RabbitMQ layer).

Two implementations, chosen by URL: `amqp://` (RabbitMQ through pika) and
`memory://` (in-process, for the embedded mode and fast tests). One contract
test suite runs against both.

Delivery is at-least-once. A handler returns normally to ack the delivery (only
after its effect is durable); raising `Reject` dead-letters it without requeue
(malformed input); any other exception requeues it, and the queue's delivery
limit dead-letters it once it has failed too often.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tme.errors import BusError


@dataclass(frozen=True)
class Delivery:
    body: bytes
    routing_key: str
    message_id: str | None = None
    headers: dict[str, object] = field(default_factory=dict)
    redelivered: bool = False


Handler = Callable[[Delivery], None]
# Takes a batch, returns one outcome per delivery: None acks it, a Reject dead-letters it,
# any other exception requeues it (like a Handler raising it: the delivery limit applies).
# Raising requeues the whole batch (nothing of it was applied).
BatchHandler = Callable[[list[Delivery]], Sequence[Exception | None]]


class Reject(BusError):
    """Raised by a handler: this message can never be processed; dead-letter it."""


class Unroutable(BusError):
    """The broker confirmed a publish that no queue took (mandatory)."""


class Nacked(BusError):
    """The broker answered a publish with a nack (it could not take it: a full queue)."""


def broker_answered(error: BusError | None) -> bool:
    """Whether a publish's outcome came from the broker (confirmed, returned as
    unroutable, nacked): the link to it works, whatever became of the message."""
    return error is None or isinstance(error, Unroutable | Nacked)


class Unreachable(BusError):
    """No connection to the broker: whatever was asked of it, it failed as a whole."""


class Consumer(Protocol):
    def stop(self) -> None: ...


@runtime_checkable
class WatchesLinks(Protocol):
    """A bus whose connections tell when they are lost and back (amqp://; the in-process
    bus has none to lose)."""

    def watch_links(self, listener: Callable[[str, BusError | None], None]) -> None:
        """Call `listener(name, error)` when a connection is lost (why) or publishes or
        consumes again (None), on the connection's thread; at once for those known."""


class Bus(Protocol):
    def start(self) -> None:
        """Connect and declare the topology (exchanges, dead-letter queue).

        With the bus option declare_topology=False it only connects: the topology is
        someone else's (the controller's), and this bus's user may not configure it.
        """

    def stop(self) -> None: ...

    def declare_site(self, site: str) -> None:
        """Declare the durable quorum queue of a site, bound to the dispatch exchange."""

    def declare_queue(self, queue: str, exchange: str, binding: str) -> None:
        """Declare a durable quorum queue bound to `exchange` with the `binding` pattern.

        Queues on tme.dispatch and tme.events get a delivery limit (SITE_DELIVERY_LIMIT
        on tme.dispatch, the configured one on tme.events) and dead-lettering; one that
        exists with another delivery limit is used as it is (its arguments cannot
        change). Queues on tme.dead keep what they receive (taps of dead letters).
        """

    def declare_events_queue(
        self, queue: str = "tme.controller.events", binding: str = "#"
    ) -> None:
        """Declare the controller's events queue, bound to tme.events with `binding`
        (`#`: every site's events)."""

    def queue_exists(self, queue: str) -> bool:
        """Whether `queue` exists: a passive check, which needs no permission on the queue."""

    def delete_queue(self, queue: str) -> None:
        """Delete a queue and its messages (decommissioned sites, test cleanup)."""

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm. Raises Unroutable or BusError."""

    def publish_many(
        self, exchange: str, messages: list[tuple[str, bytes, str | None]]
    ) -> list[BusError | None]:
        """Publish (routing_key, body, message_id) messages pipelined; one result each."""

    def consume(self, queue: str, handler: Handler, prefetch: int | None = None) -> Consumer:
        """Call handler for each delivery on its own thread until the consumer stops.

        `prefetch` bounds the deliveries unacked at once; None takes the bus option
        (broker.prefetch).
        """

    def consume_batch(
        self,
        queue: str,
        handler: BatchHandler,
        prefetch: int | None = None,
        max_batch: int = 100,
    ) -> Consumer:
        """Like consume, but hand over what has arrived (up to max_batch) in one call.

        Lets a handler make one durable write for many deliveries and have them all
        acked after it; nothing is held back waiting for a batch to fill.
        """
