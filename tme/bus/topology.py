"""Names and queue arguments of the RabbitMQ layer, shared by every transport.

Exchange names come from tme.protocol; queue names that only the bus layer
spells live here.
"""

from __future__ import annotations

from tme.protocol import DEAD_LETTER_EXCHANGE, DISPATCH_EXCHANGE, EVENTS_EXCHANGE

CONTROLLER_EVENTS_QUEUE = "tme.controller.events"
DEAD_LETTER_QUEUE = "tme.dead.letters"

# All three are topic exchanges: dispatch routes by `site.<site>`, events are
# bound with patterns, and dead letters keep their original routing key so a
# site's dead letters can be tapped separately.
EXCHANGES = (DISPATCH_EXCHANGE, EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE)

# A header the AMQP publisher adds to correlate a returned (unroutable) message
# with its delivery tag; consumers never see it.
PUBLISH_SEQ_HEADER = "x-tme-publish-seq"


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


def queue_arguments(exchange: str, delivery_limit: int) -> dict[str, object]:
    if exchange == DEAD_LETTER_EXCHANGE:
        return dead_letter_queue_arguments()
    return work_queue_arguments(delivery_limit)
