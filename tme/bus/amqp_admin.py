"""Connection parameters and topology declarations for the AMQP bus.

Declarations are rare (start-up, a new site), so each runs on a short-lived
BlockingConnection of its own: synchronous, with the broker's refusal (e.g. a
queue redeclared with other arguments) raised to the caller as BusError.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from tme.bus.base import Unreachable
from tme.bus.options import BusOptions
from tme.bus.topology import DEAD_LETTER_QUEUE, EXCHANGES, queue_arguments
from tme.errors import BusError
from tme.protocol import DEAD_LETTER_EXCHANGE

NOT_FOUND = 404  # AMQP reply code of a passive declare of something that does not exist


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
    except pika.exceptions.AMQPConnectionError as exc:
        raise Unreachable(f"RabbitMQ unreachable: {_describe(exc)}") from exc
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


def queue_exists(channel: BlockingChannel, queue: str) -> bool:
    """A passive declare: RabbitMQ answers it without checking permissions, 404 if absent."""
    _PassiveCheckFilter.install()
    _PassiveCheckFilter.checking.active = True
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            return False
        raise
    finally:
        _PassiveCheckFilter.checking.active = False
    return True


class _PassiveCheckFilter(logging.Filter):
    """pika warns about every channel the broker closes; the 404 closing a passive check is
    an answer, and a gateway waiting for its queue would repeat that warning every check.
    A BlockingConnection does its I/O on the calling thread, so a thread-local flag picks
    out exactly the records of a check in progress."""

    checking = threading.local()
    _installed = False
    _lock = threading.Lock()

    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if not cls._installed:
                logging.getLogger("pika.channel").addFilter(cls())
                cls._installed = True

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.checking, "active", False)


def _describe(exc: BaseException) -> str:
    if isinstance(
        exc, pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker
    ):
        return f"{exc.reply_code} {exc.reply_text}"
    return str(exc) or type(exc).__name__
