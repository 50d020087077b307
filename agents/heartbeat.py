"""A gateway's heartbeat: every `every_s` it tells the controller, straight over
RabbitMQ, that it is alive and how it does (tme.protocol.GatewayStatus): whether it
is connected to MQTT and consumes its site's queue, how many commands it holds unsent
(their agent offline, or MQTT down) or unanswered, how many events wait for RabbitMQ.

Presence on MQTT cannot say that a gateway died: its will reaches the controller only
through another gateway of its site. The controller shows a gateway whose heartbeats
stop offline (controller/fleet_watch.py), and the fleet shows what the last one said.
One heartbeat is in flight at a time: while RabbitMQ does not confirm, none pile up
behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import event_routing_key
from tme.protocol import EVENT_BATCHES, EVENTS_EXCHANGE, GatewayStatus, Presence

log = logging.getLogger(__name__)

# Often enough that a gateway gone is shown offline within a couple of minutes (three
# missed), rarely enough to cost nothing: one small message per gateway.
HEARTBEAT_S = 30.0


class Heartbeat:
    def __init__(
        self,
        site: str,
        name: str,
        publisher: BusPublisher,
        status: Callable[[], GatewayStatus],
        every_s: float = HEARTBEAT_S,
    ) -> None:
        self.site, self.name = site, name
        self.publisher = publisher
        self.status = status
        self.every_s = every_s
        self.sent = 0  # heartbeats handed to the publisher
        self._in_flight = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tme-gw-heartbeat", daemon=True)

    @property
    def in_flight(self) -> bool:
        """Whether the last heartbeat waits for RabbitMQ's confirm."""
        return self._in_flight.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # the next beat tries again; the thread must live on
                log.exception("gateway heartbeat failed")
            if self._stopping.wait(self.every_s):
                return

    def beat(self) -> None:
        """Send one heartbeat, unless the last one is still waiting for its confirm."""
        if self._in_flight.is_set():
            return
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
                after=self._in_flight.clear,
            )
        )
        self.sent += 1
