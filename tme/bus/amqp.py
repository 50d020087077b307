"""The amqp:// bus: RabbitMQ through pika, with confirms, quorum queues and reconnects."""

from __future__ import annotations

import threading

from tme.bus.amqp_admin import (
    admin_channel,
    connection_parameters,
    declare_queue,
    declare_topology,
    queue_exists,
)
from tme.bus.amqp_consumer import AmqpConsumer
from tme.bus.amqp_publisher import ConfirmingPublisher
from tme.bus.base import BatchHandler, Handler
from tme.bus.link_states import LinkListener, LinkStates
from tme.bus.options import BusOptions
from tme.bus.topology import EXCHANGES, DeclaresQueues
from tme.errors import BusError


class AmqpBus(DeclaresQueues):
    """One publishing connection plus one connection per consumer, each on its own thread."""

    def __init__(self, url: str, options: BusOptions) -> None:
        self.url = url
        self.options = options
        self._admin = connection_parameters(url, options, "admin")
        self._publisher: ConfirmingPublisher | None = None
        self._consumers: list[AmqpConsumer] = []
        self._lock = threading.Lock()
        self._states = LinkStates()

    def start(self) -> None:
        if self.options.declare_topology:
            with admin_channel(self._admin) as channel:
                declare_topology(channel)
        if self._publisher is None:
            parameters = connection_parameters(self.url, self.options, "publisher")
            self._publisher = ConfirmingPublisher(parameters, self.options, self._states)
            self._publisher.start()

    def stop(self) -> None:
        with self._lock:
            consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.stop()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None

    def watch_links(self, listener: LinkListener) -> None:
        """Tell `listener` when the publishing connection or a consumer's is lost, and
        when it publishes or consumes again (tme.bus.link_states)."""
        self._states.watch(listener)

    def declare_queue(self, queue: str, exchange: str, binding: str) -> None:
        with admin_channel(self._admin) as channel:
            declare_queue(channel, queue, exchange, binding, self.options.delivery_limit)

    def queue_exists(self, queue: str) -> bool:
        with admin_channel(self._admin) as channel:
            return queue_exists(channel, queue)

    def delete_queue(self, queue: str) -> None:
        with admin_channel(self._admin) as channel:
            channel.queue_delete(queue)

    def publish(
        self, exchange: str, routing_key: str, body: bytes, message_id: str | None = None
    ) -> None:
        (error,) = self.publish_many(exchange, [(routing_key, body, message_id)])
        if error is not None:
            raise error

    def publish_many(
        self, exchange: str, messages: list[tuple[str, bytes, str | None]]
    ) -> list[BusError | None]:
        if self._publisher is None:
            raise BusError("the bus is not started")
        if exchange not in EXCHANGES:
            # Publishing to a missing exchange closes the channel; refuse it up front.
            raise BusError(f"exchange {exchange!r} is not a TME exchange ({', '.join(EXCHANGES)})")
        return self._publisher.publish_many(exchange, messages)

    def consume(self, queue: str, handler: Handler, prefetch: int | None = None) -> AmqpConsumer:
        return self._consume(queue, handler, None, prefetch, 1)

    def consume_batch(
        self,
        queue: str,
        handler: BatchHandler,
        prefetch: int | None = None,
        max_batch: int = 100,
    ) -> AmqpConsumer:
        return self._consume(queue, None, handler, prefetch, max_batch)

    def _consume(
        self,
        queue: str,
        handler: Handler | None,
        batch_handler: BatchHandler | None,
        prefetch: int | None,
        max_batch: int,
    ) -> AmqpConsumer:
        parameters = connection_parameters(self.url, self.options, f"consumer:{queue}")
        window = self.options.prefetch if prefetch is None else prefetch
        consumer = AmqpConsumer(
            parameters, self.options, queue, handler, window, batch_handler, max_batch, self._states
        )
        consumer.start()
        with self._lock:
            self._consumers.append(consumer)
        return consumer
