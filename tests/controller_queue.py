"""What reaches the controller's events queue, collected for a test to wait on."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tme.bus import Bus, Delivery
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.protocol import Event, Presence, decode_events


class ControllerQueue:
    """Events and presence from tme.controller.events (or `queue`), read with `bus`."""

    def __init__(self, bus: Bus, queue: str = CONTROLLER_EVENTS_QUEUE) -> None:
        self.items: list[Event | Presence] = []
        self._cond = threading.Condition()
        self.consumer = bus.consume(queue, self._take)

    def _take(self, delivery: Delivery) -> None:
        with self._cond:
            self.items.extend(decode_events(delivery.body))
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Event | Presence], bool], what: str, timeout: float = 30
    ) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: any(predicate(i) for i in self.items), timeout):
                pytest.fail(
                    f"timed out waiting for {what}; the controller's queue had {self.items}"
                )
