"""A semaphore (and a lock) whose waiters go by priority, higher first, then in the order
they came.

asyncio's Lock and Semaphore serve their waiters first in, first out, so a priority 9
command queued behind a backlog of priority 1 reads waited for all of them. Here a
release hands the permit straight to the waiter that goes first: the highest priority,
and among equal priorities the one that has waited longest. A holder is never
interrupted: priority only orders those still waiting. Nothing in the standard library
or a well-kept package does this for asyncio, hence this small one.

One event loop, no threads (as asyncio's own); not reentrant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

from tme.protocol import DEFAULT_PRIORITY


class PrioritySemaphore:
    """`value` permits; `acquire(priority)` waits for one, `release()` hands it on."""

    def __init__(self, value: int = 1) -> None:
        if value < 1:
            raise ValueError(f"a semaphore needs at least one permit, got {value}")
        self._free = value
        # (-priority, arrival, future): the heap's smallest goes first
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        """Whether an acquire would wait now."""
        return self._free == 0

    @property
    def waiting(self) -> int:
        """How many wait for a permit now."""
        return sum(1 for _, _, future in self._waiters if not future.done())

    async def acquire(self, priority: int = DEFAULT_PRIORITY) -> bool:
        """Take a permit, waiting behind those of higher priority and those of the same
        priority that came earlier. A free permit means nobody waits (a release hands
        its permit to a waiter before it frees one), so it is taken at once."""
        if self._free > 0:
            self._free -= 1
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (-priority, next(self._arrivals), future)
        heapq.heappush(self._waiters, entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed the permit just as it was cancelled: pass it on
            elif entry in self._waiters:  # a release may have dropped it already
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise
        return True

    def release(self) -> None:
        """Hand the permit to the waiter that goes first, or free it when none waits."""
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():  # not cancelled meanwhile
                future.set_result(None)
                return
        self._free += 1

    def at(self, priority: int) -> Holding:
        """An async context manager taking a permit at `priority` (it may be entered
        again once exited: `async with bus.at(9): ...`)."""
        return Holding(self, priority)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class PriorityLock(PrioritySemaphore):
    """One permit: a lock whose waiters go by priority, then in the order they came."""

    def __init__(self) -> None:
        super().__init__(1)


class Holding:
    """`async with` a semaphore at a priority (PrioritySemaphore.at)."""

    def __init__(self, semaphore: PrioritySemaphore, priority: int) -> None:
        self.semaphore = semaphore
        self.priority = priority

    async def __aenter__(self) -> None:
        await self.semaphore.acquire(self.priority)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.semaphore.release()
