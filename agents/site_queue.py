"""Consuming a site's queue that someone else declares: wait for it, then consume.

A gateway that declares no topology (`gateway.declare_topology: false`, for a
RabbitMQ user that may configure nothing) cannot create its site's queue; the
controller does, when it first dispatches to the site or hears from its gateway.
Until then this keeps checking, with backoff, and never raises: the gateway
runs meanwhile, forwarding events. Each new reason for waiting is logged once
as a warning, so the log says what it waits for without repeating it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tme.bus.base import BatchHandler, Bus, Consumer
from tme.errors import BusError

log = logging.getLogger(__name__)

# First retry soon (the controller may be declaring it right now), then back off to
# one check every 10 s: a passive declare on a short connection is cheap at that rate.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0


class SiteQueueConsumer:
    def __init__(
        self,
        bus: Bus,
        queue: str,
        handler: BatchHandler,
        on_consuming: Callable[[], None] | None = None,
    ) -> None:
        """`on_consuming`, if given, is called once the consumer runs (on this thread)."""
        self.queue = queue
        self._on_consuming = on_consuming
        self.consuming = threading.Event()  # set once the consumer runs
        self.attempts = 0
        self._bus = bus
        self._handler = handler
        self._consumer: Consumer | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tme-gw-wait:{queue}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None

    def _run(self) -> None:
        delay, last_reason = RETRY_MIN_S, ""
        while not self._stopping.is_set():
            self.attempts += 1
            reason = self._try_consume()
            if reason is None or self._stopping.is_set():
                break
            if reason != last_reason:
                log.warning(
                    "site queue %s: %s; the controller declares it (this gateway declares no "
                    "topology); checking again with backoff up to %.0fs",
                    self.queue,
                    reason,
                    RETRY_MAX_S,
                )
                last_reason = reason
            self._stopping.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        if self.consuming.is_set():
            log.info("consuming site queue %s (attempt %d)", self.queue, self.attempts)
            if self._on_consuming is not None:
                self._on_consuming()

    def _try_consume(self) -> str | None:
        """Start the consumer; return why it is not running, None once it runs."""
        try:
            if not self._bus.queue_exists(self.queue):
                return "does not exist yet"
            if self._stopping.is_set():
                return "stopping"
            self._consumer = self._bus.consume_batch(self.queue, self._handler)
        except BusError as exc:
            return exc.message
        self.consuming.set()
        return None
