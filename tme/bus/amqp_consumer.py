"""Consuming one queue on its own AmqpLink, with the handler on a worker thread.

The I/O thread only receives deliveries and sends acks, so heartbeats keep
flowing however long a handler takes. The worker runs the handler and hands the
outcome back through `add_callback_threadsafe`: return -> ack, Reject ->
reject without requeue (dead-letter), anything else -> nack with requeue (the
queue's delivery limit dead-letters a message that keeps failing).
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
from tme.bus.base import Delivery, Handler, Reject
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
        handler: Handler,
        prefetch: int,
    ) -> None:
        self.queue = queue_name
        self._handler = handler
        self._prefetch = prefetch
        self._timeout = options.confirm_timeout_s
        self._link = AmqpLink(
            parameters, f"consumer:{queue_name}", options, self._on_channel, self._on_lost
        )
        self._work: queue.SimpleQueue[tuple[int, int, Delivery] | None] = queue.SimpleQueue()
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

    # --- I/O thread ---------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        self._generation += 1
        generation = self._generation
        consume = partial(self._start_consuming, channel, generation)
        channel.basic_qos(prefetch_count=self._prefetch, callback=consume)

    def _start_consuming(self, channel: Channel, generation: int, _frame: Method) -> None:
        channel.basic_consume(
            self.queue,
            partial(self._on_message, generation),
            callback=partial(self._on_consume_ok, channel),
        )

    def _on_consume_ok(self, channel: Channel, _frame: Method) -> None:
        self._channel = channel
        self._consuming.set()

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
        if not self._consuming.is_set():
            self._first_error = error
            self._consuming.set()

    def _settle(self, generation: int, tag: int, outcome: str) -> None:
        channel = self._channel
        if generation != self._generation or channel is None or not channel.is_open:
            return  # that channel is gone; the broker has requeued the delivery already
        if outcome == ACK:
            channel.basic_ack(tag)
        elif outcome == REJECT:
            channel.basic_reject(tag, requeue=False)
        else:
            channel.basic_nack(tag, requeue=True)

    # --- worker thread ------------------------------------------------------

    def _run_handlers(self) -> None:
        while not self._stopping:
            item = self._work.get()
            if item is None or self._stopping:
                return
            generation, tag, delivery = item
            if generation != self._generation:
                continue  # delivered on a lost channel; it comes again on the new one
            outcome = self._call_handler(delivery)
            self._link.call(partial(self._settle, generation, tag, outcome))

    def _call_handler(self, delivery: Delivery) -> str:
        try:
            self._handler(delivery)
        except Reject as exc:
            log.warning("dead-lettering %s from %s: %s", delivery.message_id, self.queue, exc)
            return REJECT
        except Exception:
            log.exception("handler failed on %s from %s; requeued", delivery.message_id, self.queue)
            return REQUEUE
        return ACK
