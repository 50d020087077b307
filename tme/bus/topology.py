"""Names and queue arguments of the RabbitMQ layer, shared by every transport.

Exchange names come from tme.protocol; queue names that only the bus layer
spells live here.
"""

from __future__ import annotations

from tme.protocol import (
    DEAD_LETTER_EXCHANGE,
    DISPATCH_EXCHANGE,
    EVENTS_EXCHANGE,
    site_queue,
    site_routing_key,
)

CONTROLLER_EVENTS_QUEUE = "tme.controller.events"
DEAD_LETTER_QUEUE = "tme.dead.letters"

# All three are topic exchanges: dispatch routes by `site.<site>`, events are
# bound with patterns, and dead letters keep their original routing key so a
# site's dead letters can be tapped separately.
EXCHANGES = (DISPATCH_EXCHANGE, EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE)

# A header the AMQP publisher adds to correlate a returned (unroutable) message
# with its delivery tag; consumers never see it.
PUBLISH_SEQ_HEADER = "x-tme-publish-seq"


# The delivery limit of a site's queue (tme.site.<site>); broker.delivery_limit is the
# events queues'. RabbitMQ up to 4.2 counts each delivery that came back unacked, also
# one a closed connection took back: a gateway whose link keeps dropping while it cannot
# take commands in (its host stalled, a link that connects but carries nothing) saw
# them dead-lettered, never run, at the sixth drop, nothing wrong with them. A command
# the gateway cannot take (malformed, misaddressed) it dead-letters itself at once,
# and it holds a batch its journal cannot take (tme.bus.holding), so on a site queue the
# count tracks lost connections (RabbitMQ's consumer_timeout closing one included),
# and the limit only has to stop a command that kills the gateway before it can answer
# (a bug) from doing so for ever: a gateway restarted every few seconds reaches 1000
# within an hour or so, while a link losing its connection once a minute (the
# heartbeat timeout) keeps a command for about 16 hours. A constant, not a setting: the
# controller and each declaring gateway must declare the same arguments (see
# docs/deployment.md, "Delivery limits").
SITE_DELIVERY_LIMIT = 1000


def work_queue_arguments(delivery_limit: int) -> dict[str, object]:
    """Arguments of a queue TME consumes work from (site and events queues).

    At-least-once dead-lettering needs overflow=reject-publish; without it a
    dead-lettered message may be dropped on the way to the dead-letter queue.
    """
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments() -> dict[str, object]:
    """The dead-letter queue keeps what it gets: no limit, no further dead-lettering."""
    return {"x-queue-type": "quorum"}


def delivery_limit_for(exchange: str, configured: int) -> int:
    """A queue's delivery limit: SITE_DELIVERY_LIMIT on tme.dispatch (site queues), the
    configured one (broker.delivery_limit) on tme.events."""
    return SITE_DELIVERY_LIMIT if exchange == DISPATCH_EXCHANGE else configured


def queue_arguments(exchange: str, delivery_limit: int) -> dict[str, object]:
    """The arguments of a queue on `exchange`; `delivery_limit` is the configured one."""
    if exchange == DEAD_LETTER_EXCHANGE:
        return dead_letter_queue_arguments()
    return work_queue_arguments(delivery_limit_for(exchange, delivery_limit))


class DeclaresQueues:
    """The queues every transport declares the same way, through its `declare_queue`."""

    def declare_queue(self, queue: str, exchange: str, binding: str) -> None:
        raise NotImplementedError

    def declare_site(self, site: str) -> None:
        self.declare_queue(site_queue(site), DISPATCH_EXCHANGE, site_routing_key(site))

    def declare_events_queue(
        self, queue: str = CONTROLLER_EVENTS_QUEUE, binding: str = "#"
    ) -> None:
        self.declare_queue(queue, EVENTS_EXCHANGE, binding)
