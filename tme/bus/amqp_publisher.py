"""Publishing with pipelined publisher confirms on one AmqpLink.

Callers hand a batch to the I/O thread, which publishes all of it at once
(mandatory, persistent) and matches Basic.Ack/Nack (possibly `multiple`) to the
messages by delivery tag; callers wait on their own messages only. Waiting for
each confirm before the next publish caps throughput at one broker round trip
per message, which is what this avoids.

A message still unconfirmed when the connection drops is published again on
the next connection (at-least-once: the consumer side deduplicates by id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import partial

import pika
import pika.exceptions
from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic, BasicProperties

from tme.bus.amqp_link import AmqpLink
from tme.bus.base import Nacked, Unroutable
from tme.bus.link_states import LinkStates
from tme.bus.options import BusOptions
from tme.bus.topology import PUBLISH_SEQ_HEADER
from tme.errors import BusError

log = logging.getLogger(__name__)

# What basic_publish raises while the channel or connection is closing or closed: the
# message is kept and published on the next channel. Anything else fails that message.
CLOSING = (
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
)


@dataclass(eq=False)
class _Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    done: threading.Event = field(default_factory=threading.Event)
    error: BusError | None = None
    returned: str | None = None  # the broker's reason when it returned the message
    abandoned: bool = False  # the caller stopped waiting; do not (re)send it


class ConfirmingPublisher:
    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        options: BusOptions,
        states: LinkStates | None = None,
    ) -> None:
        """`states`, if given, hears when the link can publish (its channel confirms)
        and when it is lost."""
        self._options = options
        self._states = states or LinkStates()
        self._link = AmqpLink(parameters, "publisher", options, self._on_channel, self._on_lost)
        # The fields below belong to the I/O thread.
        self._channel: Channel | None = None
        self._waiting: deque[_Outgoing] = deque()
        self._unconfirmed: OrderedDict[int, _Outgoing] = OrderedDict()  # by delivery tag
        self._next_tag = 1

    @property
    def link(self) -> AmqpLink:
        return self._link

    def start(self) -> None:
        self._link.start()

    def stop(self) -> None:
        self._link.stop()
        # The I/O thread has ended: nothing else touches these now.
        for outgoing in [*self._waiting, *self._unconfirmed.values()]:
            _finish(outgoing, BusError("the bus stopped before the broker confirmed"))
        self._waiting.clear()
        self._unconfirmed.clear()

    def publish_many(
        self, exchange: str, messages: list[tuple[str, bytes, str | None]]
    ) -> list[BusError | None]:
        batch = [_Outgoing(exchange, key, bytes(body), mid) for key, body, mid in messages]
        deadline = time.monotonic() + self._options.confirm_timeout_s
        self._link.call(partial(self._submit, batch))
        return [self._wait(outgoing, deadline) for outgoing in batch]

    def _wait(self, outgoing: _Outgoing, deadline: float) -> BusError | None:
        if outgoing.done.wait(max(0.0, deadline - time.monotonic())):
            return outgoing.error
        outgoing.abandoned = True
        return BusError(
            f"no confirm from RabbitMQ within {self._options.confirm_timeout_s}s",
            details={"exchange": outgoing.exchange, "routing_key": outgoing.routing_key},
        )

    # --- I/O thread ---------------------------------------------------------

    def _submit(self, batch: list[_Outgoing]) -> None:
        self._waiting.extend(batch)
        self._flush()

    def _on_channel(self, channel: Channel) -> None:
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(
            partial(self._on_confirm, channel), callback=partial(self._on_confirming, channel)
        )

    def _on_confirming(self, channel: Channel, _frame: Method) -> None:
        if not self._link.is_current(channel):
            return  # its connection was abandoned meanwhile; the next channel publishes
        self._channel = channel
        self._next_tag = 1  # delivery tags count per channel
        self._states.up(self._link.name)
        self._flush()

    def _flush(self) -> None:
        while self._channel is not None and self._waiting:
            outgoing = self._waiting.popleft()
            if outgoing.abandoned:
                continue
            tag = self._next_tag
            properties = BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=outgoing.message_id,
                headers={PUBLISH_SEQ_HEADER: tag},
            )
            try:
                self._channel.basic_publish(
                    outgoing.exchange, outgoing.routing_key, outgoing.body, properties, True
                )
            except CLOSING as exc:
                # The channel is closing; the link reconnects and we publish again then.
                log.debug("publish deferred: %s", exc)
                self._waiting.appendleft(outgoing)
                return
            except Exception as exc:
                # pika refused this message itself (e.g. a routing key over 255 bytes):
                # nothing was sent, and sending it again would fail the same way.
                _finish(outgoing, _refused(outgoing, exc))
                continue
            self._next_tag += 1
            self._unconfirmed[tag] = outgoing

    def _on_return(
        self, channel: Channel, method: Basic.Return, properties: BasicProperties, _body: bytes
    ) -> None:
        if channel is not self._channel:
            return  # from a lost channel: its tags mean other messages on this one
        tag = (properties.headers or {}).get(PUBLISH_SEQ_HEADER)
        outgoing = self._unconfirmed.get(tag) if isinstance(tag, int) else None
        if outgoing is not None:
            outgoing.returned = f"{method.reply_code} {method.reply_text}"

    def _on_confirm(self, channel: Channel, frame: Method) -> None:
        if channel is not self._channel:
            return  # a late confirm from a lost channel; tags restart on each channel
        method = frame.method
        nack = isinstance(method, Basic.Nack)
        for outgoing in self._confirmed(method.delivery_tag, method.multiple):
            if nack:
                _finish(outgoing, Nacked("RabbitMQ refused the message (nack)"))
            elif outgoing.returned is not None:
                _finish(
                    outgoing,
                    Unroutable(
                        f"no queue bound to {outgoing.exchange!r} for {outgoing.routing_key!r}",
                        details={
                            "exchange": outgoing.exchange,
                            "routing_key": outgoing.routing_key,
                            "reply": outgoing.returned,
                        },
                    ),
                )
            else:
                _finish(outgoing, None)

    def _confirmed(self, tag: int, multiple: bool) -> list[_Outgoing]:
        if not multiple:
            found = self._unconfirmed.pop(tag, None)
            return [] if found is None else [found]
        confirmed = []
        # Insertion order is tag order; OrderedDict keeps popping the oldest O(1).
        while self._unconfirmed and next(iter(self._unconfirmed)) <= tag:
            confirmed.append(self._unconfirmed.popitem(last=False)[1])
        return confirmed

    def _on_lost(self, error: BusError) -> None:
        self._channel = None
        self._states.down(self._link.name, error)
        # Unconfirmed messages go first, in their original order, on the next channel.
        again = [self._unconfirmed[tag] for tag in sorted(self._unconfirmed)]
        self._unconfirmed.clear()
        for outgoing in again:
            outgoing.returned = None
        self._waiting.extendleft(reversed(again))


def _refused(outgoing: _Outgoing, error: Exception) -> BusError:
    text = str(error) or type(error).__name__
    return BusError(
        f"pika refused the message: {type(error).__name__}: {text}"[:500],
        details={
            "exchange": outgoing.exchange,
            "routing_key": outgoing.routing_key[:300],
            "reason": type(error).__name__,
        },
    )


def _finish(outgoing: _Outgoing, error: BusError | None) -> None:
    outgoing.error = error
    outgoing.done.set()
