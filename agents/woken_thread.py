"""A gateway's background loop on its own daemon thread: started, woken early, stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable


class WokenThread:
    """Runs `loop` on a daemon thread. The loop waits on `wake_event` between passes and
    ends once `stopping` is set; `stop()` sets both and waits for the thread."""

    def __init__(self, loop: Callable[[], None], name: str) -> None:
        self.wake_event = threading.Event()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake_event.set()
        if self._thread.is_alive():
            self._thread.join()

    def wake(self) -> None:
        self.wake_event.set()
