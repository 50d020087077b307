"""The memory:// bus: the Bus contract over an in-process MemoryBroker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tme.bus.base import BatchHandler, Delivery, Handler, Reject
from tme.bus.memory_broker import MemoryBroker, StoredMessage, broker_for
from tme.bus.options import BusOptions
from tme.bus.topology import (
    DEAD_LETTER_QUEUE,
    EXCHANGES,
    DeclaresQueues,
    delivery_limit_for,
)
from tme.errors import BusError
from tme.protocol import (
    DEAD_LETTER_EXCHANGE,
)

log = logging.getLogger(__name__)


class MemoryConsumer:
    """One thread taking messages from one queue and running the handler on them."""

    def __init__(
        self,
        broker: MemoryBroker,
        queue: str,
        handler: Handler | None,
        on_stop: Callable[[MemoryConsumer], None] | None = None,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 1,
    ) -> None:
        self._broker = broker
        self._on_stop = on_stop
        self._queue = queue
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max_batch if batch_handler is not None else 1
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"tme-bus-memory-consumer:{queue}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._broker.changed:
            self._broker.changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self._on_stop is not None:
            self._on_stop(self)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._next()
            except BusError as exc:
                log.warning("memory consumer of %s stops: %s", self._queue, exc.message)
                return
            if self._batch_handler is not None and messages:
                self._handle_batch(self._batch_handler, messages)
            for message in messages if self._batch_handler is None else []:
                self._handle(message)

    def _next(self) -> list[StoredMessage]:
        with self._broker.changed:
            messages: list[StoredMessage] = []
            while len(messages) < self._max_batch:
                message = self._broker.take(self._queue)
                if message is None:
                    break
                messages.append(message)
            if not messages:
                # A bounded wait so a missed notify can never wedge the thread.
                self._broker.changed.wait(timeout=1.0)
            return messages

    @staticmethod
    def _delivery(message: StoredMessage) -> Delivery:
        headers = dict(message.headers)
        if message.delivery_count:
            headers["x-delivery-count"] = message.delivery_count
        return Delivery(
            body=message.body,
            routing_key=message.routing_key,
            message_id=message.message_id,
            headers=headers,
            redelivered=message.delivery_count > 0,
        )

    def _handle(self, message: StoredMessage) -> None:
        assert self._handler is not None
        try:
            self._handler(self._delivery(message))
        except Reject as exc:
            log.warning("dead-lettering %s from %s: %s", message.message_id, self._queue, exc)
            self._broker.reject(self._queue, message)
        except Exception:
            log.exception("handler failed on %s from %s; requeued", message.message_id, self._queue)
            self._broker.requeue(self._queue, message)

    def _handle_batch(self, handler: BatchHandler, messages: list[StoredMessage]) -> None:
        try:
            results = handler([self._delivery(m) for m in messages])
        except Exception:
            log.exception(
                "batch handler failed on %d from %s; requeued", len(messages), self._queue
            )
            for message in messages:
                self._broker.requeue(self._queue, message)
            return
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, Reject):
                log.warning(
                    "dead-lettering %s from %s: %s", message.message_id, self._queue, result
                )
                self._broker.reject(self._queue, message)
            elif result is not None:
                log.warning("requeued %s from %s: %s", message.message_id, self._queue, result)
                self._broker.requeue(self._queue, message)


class MemoryBus(DeclaresQueues):
    """Same semantics as the AMQP bus, in-process; consumers run on their own threads."""

    def __init__(self, url: str, options: BusOptions) -> None:
        self.url = url
        self.options = options
        self._broker: MemoryBroker | None = None
        self._consumers: list[MemoryConsumer] = []
        self._lock = threading.Lock()

    @property
    def broker(self) -> MemoryBroker:
        if self._broker is None:
            raise BusError("the bus is not started")
        return self._broker

    def start(self) -> None:
        self._broker = broker_for(self.url)
        if not self.options.declare_topology:
            return
        for exchange in EXCHANGES:
            self._broker.declare_exchange(exchange)
        self.declare_queue(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "#")

    def stop(self) -> None:
        with self._lock:
            consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.stop()

    def declare_queue(self, queue: str, exchange: str, binding: str) -> None:
        if exchange == DEAD_LETTER_EXCHANGE:
            self.broker.declare_queue(queue, None, None)
        else:
            limit = delivery_limit_for(exchange, self.options.delivery_limit)
            self.broker.declare_queue(queue, limit, DEAD_LETTER_EXCHANGE)
        self.broker.bind(queue, exchange, binding)

    def queue_exists(self, queue: str) -> bool:
        return queue in self.broker.queues

    def delete_queue(self, queue: str) -> None:
        self.broker.delete_queue(queue)

    def publish(
        self, exchange: str, routing_key: str, body: bytes, message_id: str | None = None
    ) -> None:
        self.broker.publish(exchange, StoredMessage(bytes(body), routing_key, message_id))

    def publish_many(
        self, exchange: str, messages: list[tuple[str, bytes, str | None]]
    ) -> list[BusError | None]:
        results: list[BusError | None] = []
        for routing_key, body, message_id in messages:
            try:
                self.publish(exchange, routing_key, body, message_id)
                results.append(None)
            except BusError as exc:
                results.append(exc)
        return results

    def consume(self, queue: str, handler: Handler, prefetch: int | None = None) -> MemoryConsumer:
        if queue not in self.broker.queues:
            raise BusError(f"queue {queue!r} does not exist")
        consumer = MemoryConsumer(self.broker, queue, handler, on_stop=self._forget)
        with self._lock:
            self._consumers.append(consumer)
        return consumer

    def consume_batch(
        self,
        queue: str,
        handler: BatchHandler,
        prefetch: int | None = None,
        max_batch: int = 100,
    ) -> MemoryConsumer:
        if queue not in self.broker.queues:
            raise BusError(f"queue {queue!r} does not exist")
        consumer = MemoryConsumer(
            self.broker,
            queue,
            None,
            on_stop=self._forget,
            batch_handler=handler,
            max_batch=max_batch,
        )
        with self._lock:
            self._consumers.append(consumer)
        return consumer

    def _forget(self, consumer: MemoryConsumer) -> None:
        with self._lock:
            if consumer in self._consumers:
                self._consumers.remove(consumer)
