"""One thread that publishes the gateway's messages to the bus, in order, until confirmed.

A bus publish waits for the broker's confirm, which must never happen on paho's
thread; and a failed publish is retried rather than dropped, because what waits
behind it (an MQTT ack, a journal update) must only happen after the confirm.
One thread keeps the order in which the agent's events arrived.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tme.bus.base import Bus
from tme.errors import BusError

log = logging.getLogger(__name__)

RETRY_MIN_S, RETRY_MAX_S = 0.2, 10.0  # back off while the bus is down, without busy-looping


@dataclass(frozen=True)
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    after: Callable[[], None] | None = None  # runs once the broker confirmed


class BusPublisher:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tme-gw-bus-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the message in hand; queued ones are not confirmed, hence not acked."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, item: Outgoing) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                return
            if self._publish_until_confirmed(item) and item.after is not None:
                try:
                    item.after()
                except Exception:
                    log.exception("after-confirm step of %s failed", item.message_id)

    def _publish_until_confirmed(self, item: Outgoing) -> bool:
        delay = RETRY_MIN_S
        failures = 0
        while not self._stopping.is_set():
            try:
                self._bus.publish(item.exchange, item.routing_key, item.body, item.message_id)
            except BusError as exc:
                failures += 1
                if failures == 1:  # log once, then quietly until it recovers
                    log.warning(
                        "bus publish %s failed, retrying: %s", item.routing_key, exc.message
                    )
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if failures:
                log.info("bus publish recovered after %d failures", failures)
            return True
        return False
