"""One RabbitMQ connection on its own I/O thread, reopened with capped backoff.

pika connections are not thread-safe, so each link owns a SelectConnection and
the thread running its IOLoop; other threads reach it only through `call`,
which goes through `add_callback_threadsafe`. The IOLoop lives as long as the
link, so heartbeats are serviced all the time and a dropped connection is
replaced by a new one on the same loop.

A link that cannot connect says so once (with the reason), then one line a minute
while it lasts, and once when its channel has stayed open a while (tme.failure_log). pika's own
lines (eight at ERROR per failed attempt, hundreds a minute through a broker outage)
are left out by the default `logging.loggers` setting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial

import pika
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from tme.bus.options import BusOptions
from tme.errors import BusError
from tme.failure_log import FailureLog

log = logging.getLogger(__name__)

MAX_DOUBLINGS = 32  # of the reconnect delay; see _schedule_reconnect


class AmqpLink:
    """Keeps one channel open; tells its owner when it opens and when it is lost.

    `on_channel(channel)` and `on_lost(error)` run on the I/O thread.
    """

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        name: str,
        options: BusOptions,
        on_channel: Callable[[Channel], None],
        on_lost: Callable[[BusError], None],
    ) -> None:
        self.name = name
        self.opened = 0  # channels opened so far; more than one means it reconnected
        self.connects = 0  # connections started so far (attempts, opened or not)
        self._parameters = parameters
        self._options = options
        self._on_channel = on_channel
        self._on_lost = on_lost
        self._ioloop = IOLoop()
        self._connection: pika.SelectConnection | None = None
        self._channel: Channel | None = None
        self._failures = 0
        self._reconnect_timer: object | None = None  # the pending call_later of _connect
        self._close_reason: BaseException | None = None  # why the broker closed the channel
        self._stopping = False
        self.outage = FailureLog(log, f"bus link {name}", meanwhile="reconnecting with backoff")
        self._thread = threading.Thread(target=self._run, name=f"tme-bus-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the I/O thread (the only way in from other threads)."""
        self._ioloop.add_callback_threadsafe(callback)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and end the I/O thread."""
        if not self._thread.is_alive():
            return
        self.call(self._shutdown)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("bus link %s did not stop within %ss", self.name, timeout)

    @property
    def failures(self) -> int:
        """Connection attempts that failed in a row (0 once a channel stayed open a while)."""
        return self._failures

    def is_current(self, channel: Channel) -> bool:
        """Whether `channel` is the link's open channel, not one of a lost connection."""
        return self._channel is not None and channel is self._channel and channel.is_open

    def _run(self) -> None:
        self._guarded(self._connect)
        while True:
            try:
                self._ioloop.start()
                break
            except Exception as exc:
                # A callback raised out of pika: the connection's state is unknown,
                # so it is dropped and replaced; the link itself must not die.
                log.exception("bus link %s: I/O loop error", self.name)
                if self._stopping:
                    break
                self._guarded(partial(self._abandon_connection, exc))
        self._ioloop.close()

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step of the loop's own upkeep; if even that fails, retry later."""
        try:
            step()
        except Exception:
            log.exception("bus link %s: reconnecting after an unexpected error", self.name)
            self._reconnect_in(self._options.reconnect_max_s)

    def _abandon_connection(self, error: BaseException) -> None:
        connection, self._connection = self._connection, None
        if self._channel is not None:
            self._channel = None
            self._on_lost(_as_bus_error(self.name, error))
        # Closed, not only forgotten: left open it would keep its heartbeats and hold its
        # deliveries unacked. Its callbacks are ignored from now on (not the current one).
        # One still opening is closed when it opens (closing it now trips pika 1.4).
        if connection is not None and connection.is_open:
            connection.close()
        self._schedule_reconnect(error)

    def _connect(self) -> None:
        self._reconnect_timer = None
        if self._stopping:
            return
        self.connects += 1
        self._connection = pika.SelectConnection(
            self._parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_failed,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        current = self._connection
        if current is None or connection is not current:
            connection.close()  # abandoned while it was opening
            return
        current.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Channel) -> None:
        if channel.connection is not self._connection:
            if channel.connection.is_open:
                channel.connection.close()  # its connection was abandoned meanwhile
            return
        self.opened += 1
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        # The backoff starts over once the channel has stayed open a while, not as soon as
        # it opens: one the broker closes at once (publishing to an exchange that does not
        # exist yet) would otherwise be reopened five times a second, warning each time.
        self._ioloop.call_later(self._options.reconnect_max_s, partial(self._healthy, channel))
        self._on_channel(channel)

    def _healthy(self, channel: Channel) -> None:
        if channel.is_open and self._channel is channel:
            self._failures = 0
            self.outage.passed()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        if not self._stopping:
            self._close_reason = reason
            self._on_lost(_as_bus_error(self.name, reason))
        # A channel closed by the broker (e.g. a missing queue) leaves the connection
        # open; closing it goes through the one reconnect path.
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_connection_failed(
        self, connection: pika.SelectConnection, error: BaseException
    ) -> None:
        if connection is not self._connection:
            return  # an abandoned connection; its replacement is on its way
        self._connection = None
        if self._stopping:
            self._ioloop.stop()
            return
        self._on_lost(_as_bus_error(self.name, error))
        self._schedule_reconnect(error)

    def _on_connection_closed(
        self, connection: pika.SelectConnection, error: BaseException
    ) -> None:
        if connection is not self._connection:
            return  # an abandoned connection, closed by us; the link has moved on
        self._connection = None
        if self._stopping:
            self._ioloop.stop()
            return
        if self._channel is not None:
            self._channel = None
            self._on_lost(_as_bus_error(self.name, error))
        # When the broker closed the channel, that is the reason, not our closing after it.
        reason, self._close_reason = self._close_reason or error, None
        self._schedule_reconnect(reason)

    def _schedule_reconnect(self, error: BaseException) -> None:
        # The exponent is capped: 2**1024 overflows a float, after about three hours of
        # outage at the default options; 2**MAX_DOUBLINGS is past any sane max/min ratio.
        doublings = min(self._failures, MAX_DOUBLINGS)
        delay = min(self._options.reconnect_max_s, self._options.reconnect_min_s * 2**doublings)
        self._failures += 1
        self.outage.failed(_as_bus_error(self.name, error))
        log.debug("bus link %s lost (%s); reconnecting in %.1fs", self.name, error, delay)
        self._reconnect_in(delay)

    def _reconnect_in(self, delay: float) -> None:
        if self._reconnect_timer is not None:
            self._ioloop.remove_timeout(self._reconnect_timer)  # one pending reconnect at most
        self._reconnect_timer = self._ioloop.call_later(delay, self._connect)

    def _shutdown(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()  # the close callback stops the loop
        elif connection is None or not connection.is_closing:
            # Closing a connection that is still opening trips an assertion inside
            # pika 1.4, so a half-open one is abandoned with the loop instead.
            self._ioloop.stop()


def _as_bus_error(name: str, error: BaseException) -> BusError:
    """Translate a pika close reason into TME's error, keeping the broker's text."""
    if isinstance(error, BusError):
        return error
    text = str(error) or type(error).__name__
    return BusError(f"bus link {name}: {text}", details={"reason": type(error).__name__})
