"""Connection parameters and topology declarations for the AMQP bus.

Declarations are rare (start-up, a new site), so each runs on a short-lived
BlockingConnection of its own: synchronous, with the broker's refusal (e.g. a
queue redeclared with other arguments) raised to the caller as BusError.
"""

from __future__ import annotations

import logging
import re
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
PRECONDITION_FAILED = 406  # a redeclare with other arguments
log = logging.getLogger(__name__)


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
    except (pika.exceptions.AMQPConnectionError, OSError) as exc:  # OSError: a name not found
        raise Unreachable(connection_problem(exc, parameters)) from exc
    try:
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
    """Declare and bind a queue. One that exists with another delivery limit (declared
    by an older TME, or under another broker.delivery_limit) is used as it is, with a
    warning: a queue's arguments cannot change, and refusing it would stop its site.
    Any other difference is refused (BusError from admin_channel)."""
    arguments = queue_arguments(exchange, delivery_limit)
    try:
        channel.queue_declare(queue, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        kept = _delivery_limit_kept(exc)
        if kept is None:
            raise
        channel = channel.connection.channel()  # the refusal closed the first one
        channel.queue_declare(
            queue, durable=True, arguments={**arguments, "x-delivery-limit": kept}
        )  # every other argument is still checked
        log.warning(
            "queue %s keeps the delivery limit %d it was declared with (TME declares it with"
            " %s now); see 'Delivery limits' in docs/deployment.md to adopt that",
            queue,
            kept,
            arguments["x-delivery-limit"],
        )
    channel.queue_bind(queue, exchange, routing_key=binding)


# RabbitMQ's refusal of a redeclare whose x-delivery-limit differs from the queue's:
# "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue '...' in vhost
# '/': received '1000' but current is '5'" (3.10; "current is the value '5' of type
# 'signedint'" when the declare names none). A queue without one does not match.
_OTHER_DELIVERY_LIMIT = re.compile(
    r"inequivalent arg 'x-delivery-limit' .* current is (?:the value )?'(\d+)'"
)


def _delivery_limit_kept(exc: pika.exceptions.ChannelClosedByBroker) -> int | None:
    """The queue's own delivery limit, when that is what the broker refused on."""
    if exc.reply_code != PRECONDITION_FAILED:
        return None
    found = _OTHER_DELIVERY_LIMIT.search(exc.reply_text)
    return int(found.group(1)) if found else None


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


def connection_problem(exc: BaseException, parameters: pika.ConnectionParameters) -> str:
    """Why a connection could not be opened, naming the broker: its address and the
    cause (refused, no such host, ...), or the login or vhost it refused."""
    where = f"{parameters.host}:{parameters.port}"
    user = getattr(parameters.credentials, "username", "")
    if isinstance(
        exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError
    ):
        return (
            f"RabbitMQ at {where} refused the login of user {user!r}: check the user and"
            " password (broker.url, or broker.user and broker.password)"
        )
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return (
            f"RabbitMQ at {where} refused user {user!r} the vhost"
            f" {parameters.virtual_host!r}: {_describe(exc)}"
        )
    root = exc  # pika wraps the socket's error in a connector's error, as its .exception
    while not isinstance(root, OSError):
        inner = getattr(root, "exception", None) or (root.args[0] if root.args else None)
        if not isinstance(inner, BaseException):
            break
        root = inner
    reason = (root.strerror or str(root)) if isinstance(root, OSError) else _describe(root)
    return f"RabbitMQ unreachable at {where}: {reason}"


def _describe(exc: BaseException) -> str:
    if isinstance(
        exc, pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker
    ):
        return f"{exc.reply_code} {exc.reply_text}"
    return str(exc) or type(exc).__name__
