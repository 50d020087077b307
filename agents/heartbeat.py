"""A gateway's heartbeat: every `every_s` it tells the controller, straight over
RabbitMQ, that it is alive and how it does (tme.protocol.GatewayStatus): whether it
is connected to MQTT and consumes its site's queue, how many commands it holds unsent
(their agent offline, or MQTT down) or unanswered, how many events wait for RabbitMQ.

Presence on MQTT cannot say that a gateway died: its will reaches the controller only
through another gateway of its site. The controller shows a gateway whose heartbeats
stop offline (controller/fleet_watch.py), and the fleet shows what the last one said.
One heartbeat is in flight at a time: while RabbitMQ does not confirm, none pile up
behind it.

A change the operator sees (MQTT connected or lost, the site queue consumed, the
journal failing or back) is told at once rather than at the next beat (`changed`),
which a gateway that had just started showed as MQTT down for a whole period. Such
beats are spaced CHANGE_GAP_S apart at least, and each says how things stand when it
goes: a link flapping a hundred times a second costs one message a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import event_routing_key
from tme.agents.woken_thread import WokenThread
from tme.protocol import EVENT_BATCHES, EVENTS_EXCHANGE, GatewayStatus, Presence

log = logging.getLogger(__name__)

# Often enough that a gateway gone is shown offline within a couple of minutes (three
# missed), rarely enough to cost nothing: one small message per gateway.
HEARTBEAT_S = 30.0
# The least time between two beats sent for a change: soon enough for an operator who
# looks just after a change, and a flapping link still costs no more than a message a
# second.
CHANGE_GAP_S = 1.0


class Heartbeat:
    def __init__(
        self,
        site: str,
        name: str,
        publisher: BusPublisher,
        status: Callable[[], GatewayStatus],
        every_s: float = HEARTBEAT_S,
        change_gap_s: float = CHANGE_GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site, self.name = site, name
        self.publisher = publisher
        self.status = status
        self.every_s = every_s
        self.change_gap_s = change_gap_s
        self.clock = clock
        self.sent = 0  # heartbeats handed to the publisher
        self._due = 0.0  # clock time of the next timed beat (the first goes at once)
        self._last_at = -change_gap_s  # clock time of the last beat sent
        # A change no beat sent since has told. Set from other threads (paho's, the bus
        # consumer's), cleared here before the status is read: a change after the read
        # sends another beat, one before it is in this one. (A bool is set atomically.)
        self._changed = False
        self._in_flight = threading.Event()
        self._loop = WokenThread(self._run, "tme-gw-heartbeat")
        self._wake = self._loop.wake_event  # a change, a confirm, or a stop
        self._stopping = self._loop.stopping

    @property
    def in_flight(self) -> bool:
        """Whether the last heartbeat waits for RabbitMQ's confirm."""
        return self._in_flight.is_set()

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def changed(self) -> None:
        """The gateway's state changed in a way the controller shows: tell it soon
        (within change_gap_s of the last beat, or once the beat in flight is confirmed).
        Cheap and safe from any thread; many calls in a row make one beat."""
        self._changed = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a wake-up from here on is not missed
            wait_s = self.tick(self.clock())
            self._wake.wait(wait_s)

    def tick(self, now: float) -> float:
        """Send the beat due at `now` (its period came, or a change waits and the last
        beat is change_gap_s behind); return how long until one may be due."""
        timed = now >= self._due
        if timed:
            self._due = now + self.every_s  # one in flight at its time: this one is skipped
        if timed or (self._changed and now >= self._last_at + self.change_gap_s):
            try:
                tried = self.beat()
            except Exception:  # the next beat tries again; the thread must live on
                log.exception("gateway heartbeat failed")
                tried = True  # a change waits its gap before the next try, too
            if tried:
                self._last_at = now
        wait_s = self._due - now
        if self._changed and not self._in_flight.is_set():
            wait_s = min(wait_s, self._last_at + self.change_gap_s - now)
        return max(wait_s, 0.0)

    def beat(self) -> bool:
        """Send one heartbeat, unless the last one is still waiting for its confirm (then
        a change waits for that confirm); return whether one was sent."""
        if self._in_flight.is_set():
            return False
        changed, self._changed = self._changed, False  # before the status is read (__init__)
        try:
            presence = Presence(
                site=self.site,
                agent=self.name,
                role="gateway",
                state="online",
                features=[EVENT_BATCHES],
                status=self.status(),
            )
            self._in_flight.set()
            self.publisher.submit(
                Outgoing(
                    EVENTS_EXCHANGE,
                    event_routing_key(self.site, self.name, "presence"),
                    presence.to_json(),
                    presence.id,
                    after=self._confirmed,
                )
            )
        except BaseException:
            self._in_flight.clear()
            if changed:
                self._changed = True  # still untold
            raise
        self.sent += 1
        return True

    def _confirmed(self) -> None:
        self._in_flight.clear()
        if self._changed:
            self._wake.set()  # the change that waited for this confirm goes now
