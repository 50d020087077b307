"""What a bus's connections say of the broker, as they open and close, to whoever
watches (a gateway tells its agents whether it reaches RabbitMQ).

A connection that closes, resets or misses its heartbeats says so at once: an idle
process learns that it lost the broker without publishing anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tme.errors import BusError

log = logging.getLogger(__name__)

# Called with a connection's name and why it is down, or None: it is up, or no longer
# counts (a consumer stopped). Runs on the connection's I/O thread: it must not block.
LinkListener = Callable[[str, BusError | None], None]


class LinkStates:
    """The state of each named connection of one bus, told to its listeners on change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[str, BusError | None] = {}
        self._listeners: list[LinkListener] = []

    def watch(self, listener: LinkListener) -> None:
        """Tell `listener` every change from now on, and now each connection known."""
        with self._lock:
            self._listeners.append(listener)
            known = list(self._down.items())
        for name, error in known:
            self._tell(listener, name, error)

    def up(self, name: str) -> None:
        self._set(name, None)

    def down(self, name: str, error: BusError) -> None:
        self._set(name, error)

    def forget(self, name: str) -> None:
        """A connection closed on purpose (its consumer stopped): it no longer counts."""
        with self._lock:
            if name not in self._down:
                return
            if self._down.pop(name) is None:
                return  # it was up: nothing changes for the listeners
            listeners = list(self._listeners)
        for listener in listeners:
            self._tell(listener, name, None)

    def _set(self, name: str, error: BusError | None) -> None:
        with self._lock:
            known = name in self._down
            if known and (self._down[name] is None) == (error is None):
                return  # no change (a reconnect attempt failing again)
            self._down[name] = error
            listeners = list(self._listeners)
        for listener in listeners:
            self._tell(listener, name, error)

    @staticmethod
    def _tell(listener: LinkListener, name: str, error: BusError | None) -> None:
        try:
            listener(name, error)
        except Exception:  # a listener's failure must not break the connection's thread
            log.exception("telling that bus link %s is %s failed", name, "down" if error else "up")
