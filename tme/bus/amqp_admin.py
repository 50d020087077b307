"""Connection parameters and topology declarations for the AMQP bus.

Declarations are rare (start-up, a new site), so each runs on a short-lived
BlockingConnection of its own: synchronous, with the broker's refusal (e.g. a
queue redeclared with other arguments) raised to the caller as BusError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from tme.bus.options import BusOptions
from tme.bus.topology import DEAD_LETTER_QUEUE, EXCHANGES, queue_arguments
from tme.errors import BusError
from tme.protocol import DEAD_LETTER_EXCHANGE


def connection_parameters(url: str, options: BusOptions, role: str) -> pika.URLParameters:
    try:
        parameters = pika.URLParameters(url)
    except (ValueError, TypeError) as exc:
        raise BusError(f"bad AMQP URL: {exc}") from exc
    parameters.heartbeat = options.heartbeat_s
    parameters.blocked_connection_timeout = options.blocked_connection_timeout_s
    # TME reconnects with its own capped backoff; pika's own retries would hide drops.
    parameters.connection_attempts = 1
    parameters.socket_timeout = 10
    parameters.client_properties = {"connection_name": f"{options.connection_name}:{role}"}
    return parameters


@contextmanager
def admin_channel(parameters: pika.ConnectionParameters) -> Iterator[BlockingChannel]:
    """A channel on its own connection, closed on exit; pika errors become BusError."""
    connection = None
    try:
        connection = pika.BlockingConnection(parameters)
        yield connection.channel()
    except pika.exceptions.AMQPError as exc:
        raise BusError(f"RabbitMQ refused: {_describe(exc)}") from exc
    finally:
        if connection is not None and connection.is_open:
            # If the connection is already gone there is nothing left to release.
            with suppress(pika.exceptions.AMQPError):
                connection.close()


def declare_topology(channel: BlockingChannel) -> None:
    for exchange in EXCHANGES:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    declare_queue(channel, DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "#", delivery_limit=0)


def declare_queue(
    channel: BlockingChannel, queue: str, exchange: str, binding: str, delivery_limit: int
) -> None:
    channel.queue_declare(queue, durable=True, arguments=queue_arguments(exchange, delivery_limit))
    channel.queue_bind(queue, exchange, routing_key=binding)


def _describe(exc: BaseException) -> str:
    if isinstance(
        exc, pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker
    ):
        return f"{exc.reply_code} {exc.reply_text}"
    return str(exc) or type(exc).__name__
