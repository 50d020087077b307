"""Run an async simulator on its own event loop in a background thread.

Synchronous tests, other processes' helpers and code living on a different
loop (controller, agent) use this to keep a simulator running beside them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

START_STOP_TIMEOUT_S = 10.0  # a simulator binds local sockets only: seconds mean it is stuck


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)
T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread, until `close`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = START_STOP_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(START_STOP_TIMEOUT_S)
        self.loop.close()


@contextmanager
def running_in_thread(service: S, name: str = "tme-simulator") -> Iterator[S]:
    """Start `service` on a loop thread, yield it, then stop it and join the thread."""
    runner = LoopThread(name)
    try:
        runner.run(service.start())
        try:
            yield service
        finally:
            runner.run(service.stop())
    finally:
        runner.close()
