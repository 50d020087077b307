"""Whether a gateway reaches RabbitMQ, as its presence says to the site's agents
(`upstream`), which stop devices on link loss by it (agents/link_watch).

Two things tell: its publishes (a broker that confirms, returns a message as
unroutable or nacks it answered; one that does not answer within the confirm timeout
is not reached) and its connections (publishing, consuming the site's queue), which
say at once when they are lost: closed, reset, or their AMQP heartbeats missed. An
idle gateway thus says `upstream: false` as soon as a connection is gone, not at its
next publish. It reaches RabbitMQ while no connection is down and its last publish
was answered; from its start, not before its first publish is answered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tme.errors import BusError

log = logging.getLogger(__name__)


class Upstream:
    def __init__(self, on_change: Callable[[bool], None]) -> None:
        """`on_change(up)` is called on each change (under a lock: in order)."""
        self._on_change = on_change
        self._lock = threading.Lock()
        self._answered = False  # the last publish was answered (none yet: not known)
        self._down: dict[str, BusError] = {}  # connections lost, by name: why
        self.up = False

    def published(self, answered: bool) -> None:
        """A publish was answered by the broker (True), or not (False)."""
        with self._lock:
            self._answered = answered
            self._update("publishes are confirmed again" if answered else "a publish failed")

    def link_changed(self, name: str, error: BusError | None) -> None:
        """A connection was lost (`error`: why) or is back (None)."""
        with self._lock:
            if error is None:
                if self._down.pop(name, None) is None:
                    return
                self._update(f"its connection {name} is back")
            else:
                self._down[name] = error
                self._update(error.message)

    def _update(self, why: str) -> None:
        up = self._answered and not self._down
        if up == self.up:
            return
        self.up = up
        log.log(
            logging.INFO if up else logging.WARNING,
            "RabbitMQ %s (%s); telling the site's agents",
            "reached" if up else "cannot be reached",
            why,
        )
        try:
            self._on_change(up)
        except Exception:  # the gateway goes on; the next change says it again
            log.exception("telling that RabbitMQ is %s failed", "reached" if up else "lost")
