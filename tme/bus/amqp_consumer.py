"""Consuming one queue on its own AmqpLink, with the handler on a worker thread.

The I/O thread only receives deliveries and sends acks, so heartbeats keep
flowing however long a handler takes. The worker runs the handler and hands the
outcome back through `add_callback_threadsafe`: return -> ack, Reject ->
reject without requeue (dead-letter), anything else -> nack with requeue (the
queue's delivery limit dead-letters a message that keeps failing). A batch
handler returns those outcomes per delivery, or raises to requeue the batch.

A consumer the broker cancels (its queue was deleted) closes its channel, so the
link reconnects and consumes again once the queue is back.
"""

from __future__ import annotations

import logging
import queue
import threading
from functools import partial

import pika
from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic, BasicProperties

from tme.bus.amqp_link import AmqpLink
from tme.bus.base import BatchHandler, Delivery, Handler, Reject
from tme.bus.link_states import LinkStates
from tme.bus.options import BusOptions
from tme.bus.topology import PUBLISH_SEQ_HEADER
from tme.errors import BusError

log = logging.getLogger(__name__)

ACK, REJECT, REQUEUE = "ack", "reject", "requeue"


class AmqpConsumer:
    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        options: BusOptions,
        queue_name: str,
        handler: Handler | None,
        prefetch: int,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 1,
        states: LinkStates | None = None,
    ) -> None:
        """`states`, if given, hears when it consumes and when its link is lost."""
        self.queue = queue_name
        self._states = states or LinkStates()
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max_batch if batch_handler is not None else 1
        self._prefetch = prefetch
        self._timeout = options.confirm_timeout_s
        self._link = AmqpLink(
            parameters, f"consumer:{queue_name}", options, self._on_channel, self._on_lost
        )
        self._work: queue.SimpleQueue[tuple[int, int, Delivery] | None] = queue.SimpleQueue()
        self._carry: tuple[int, int, Delivery] | None = None
        self._generation = 0  # bumped per channel; acks for an older channel are void
        self._channel: Channel | None = None
        self._consuming = threading.Event()
        self._first_error: BusError | None = None
        self._stopping = False
        self._worker = threading.Thread(
            target=self._run_handlers, name=f"tme-bus-handler:{queue_name}", daemon=True
        )

    @property
    def link(self) -> AmqpLink:
        return self._link

    def start(self) -> None:
        """Start consuming; raise BusError if the first attempt fails (e.g. no such queue)."""
        self._link.start()
        self._worker.start()
        if not self._consuming.wait(self._timeout) or self._first_error is not None:
            error = self._first_error or BusError(f"could not consume {self.queue!r} in time")
            self.stop()
            raise error

    def stop(self) -> None:
        """Let the running handler finish and settle, then close; unsettled deliveries requeue."""
        self._stopping = True
        self._work.put(None)
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join()
        self._link.stop()
        self._states.forget(self._link.name)

    # --- I/O thread ---------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        self._generation += 1
        generation = self._generation
        consume = partial(self._start_consuming, channel, generation)
        channel.basic_qos(prefetch_count=self._prefetch, callback=consume)

    def _start_consuming(self, channel: Channel, generation: int, _frame: Method) -> None:
        channel.add_on_cancel_callback(partial(self._on_cancelled, channel))
        channel.basic_consume(
            self.queue,
            partial(self._on_message, generation),
            callback=partial(self._on_consume_ok, channel),
        )

    def _on_consume_ok(self, channel: Channel, _frame: Method) -> None:
        if not self._link.is_current(channel):
            return  # its connection was abandoned meanwhile; the next channel consumes
        self._channel = channel
        self._consuming.set()
        self._states.up(self._link.name)

    def _on_cancelled(self, channel: Channel, _frame: Method) -> None:
        """The broker cancelled the consumer (its queue was deleted). The channel stays
        open and would receive nothing ever again, so it is closed: the link reconnects
        with backoff and consumes again, the queue's absence failing like at start-up."""
        log.warning("RabbitMQ cancelled the consumer of %s; consuming again", self.queue)
        if self._link.is_current(channel):
            channel.close()

    def _on_message(
        self,
        generation: int,
        _channel: Channel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        headers = dict(properties.headers or {})
        headers.pop(PUBLISH_SEQ_HEADER, None)
        delivery = Delivery(
            body=body,
            routing_key=method.routing_key,
            message_id=properties.message_id,
            headers=headers,
            redelivered=bool(method.redelivered),
        )
        self._work.put((generation, method.delivery_tag, delivery))

    def _on_lost(self, error: BusError) -> None:
        self._channel = None
        self._generation += 1  # what that channel delivered is requeued by the broker
        self._states.down(self._link.name, error)
        if not self._consuming.is_set():
            self._first_error = error
            self._consuming.set()

    def _settle(self, generation: int, settle: list[tuple[int, str]]) -> None:
        channel = self._channel
        if generation != self._generation or channel is None or not channel.is_open:
            return  # that channel is gone; the broker has requeued the deliveries already
        for tag, outcome in settle:
            if outcome == ACK:
                channel.basic_ack(tag)
            elif outcome == REJECT:
                channel.basic_reject(tag, requeue=False)
            else:
                channel.basic_nack(tag, requeue=True)

    # --- worker thread ------------------------------------------------------

    def _run_handlers(self) -> None:
        while not self._stopping:
            batch = self._take_batch()
            if batch is None or self._stopping:
                return
            generation = batch[0][0]
            if generation != self._generation:
                continue  # delivered on a lost channel; it comes again on the new one
            outcomes = self._call(batch)
            settle = [
                (tag, outcome) for (_g, tag, _d), outcome in zip(batch, outcomes, strict=True)
            ]
            self._link.call(partial(self._settle, generation, settle))

    def _take_batch(self) -> list[tuple[int, int, Delivery]] | None:
        """The next delivery and whatever else has arrived on the same channel, up to the max."""
        first, self._carry = self._carry or self._work.get(), None
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stopping = True
                break
            if item[0] != first[0]:
                self._carry = item  # from another channel: it starts the next batch
                break
            batch.append(item)
        return batch

    def _call(self, batch: list[tuple[int, int, Delivery]]) -> list[str]:
        deliveries = [delivery for _g, _t, delivery in batch]
        if self._batch_handler is None:
            return [self._call_handler(delivery) for delivery in deliveries]
        try:
            results = self._batch_handler(deliveries)
        except Exception:
            log.exception("batch handler failed on %d from %s; requeued", len(batch), self.queue)
            return [REQUEUE] * len(batch)
        return [
            self._outcome(delivery, result)
            for delivery, result in zip(deliveries, results, strict=True)
        ]

    def _outcome(self, delivery: Delivery, result: Exception | None) -> str:
        if result is None:
            return ACK
        if isinstance(result, Reject):
            return REJECT
        log.warning("requeued %s from %s: %s", delivery.message_id, self.queue, result)
        return REQUEUE

    def _call_handler(self, delivery: Delivery) -> str:
        assert self._handler is not None
        try:
            self._handler(delivery)
        except Reject as exc:
            log.warning("dead-lettering %s from %s: %s", delivery.message_id, self.queue, exc)
            return REJECT
        except Exception:
            log.exception("handler failed on %s from %s; requeued", delivery.message_id, self.queue)
            return REQUEUE
        return ACK
