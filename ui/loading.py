"""A page's database work on a worker thread, so the UI loop never waits for it.

NiceGUI serves every page, every live update and /healthz from one asyncio loop; a
report over a long run history takes seconds of database time. A page shows its
frame with a placeholder, sends it at once, and fills it in when the work is done
(NiceGUI's advice for long setup: await the connection, then `run.io_bound`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

from nicegui import context, run, ui

P = ParamSpec("P")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)

# A browser that asked for the page but never opened its socket: stop waiting for it.
CONNECT_TIMEOUT_S = 30.0


def placeholder(what: str) -> ui.column:
    """Where the page's data will go: a spinner until then."""
    with ui.column().classes("w-full") as box, ui.row().classes("items-center gap-2"):
        ui.spinner()
        ui.label(f"loading {what}…").classes("text-gray-500")
    return box


async def off_the_loop(work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """`work(*args)` on a worker thread once the browser is connected; None when the
    server is stopping. The page was sent before the work began."""
    await context.client.connected(timeout=CONNECT_TIMEOUT_S)
    return await run.io_bound(work, *args, **kwargs)


class OneAtATime(Generic[K]):
    """Live redraws: `work(key)` runs one at a time per key (a page's figures, a
    device's table); asked again while it runs, it runs once more when done, so a burst
    of changes costs two reads, not one each."""

    def __init__(self, work: Callable[[K], Awaitable[None]]) -> None:
        self._work = work
        self._busy: set[K] = set()
        self._again: set[K] = set()

    async def __call__(self, key: K) -> None:
        if key in self._busy:
            self._again.add(key)
            return
        self._busy.add(key)
        try:
            while True:
                self._again.discard(key)
                await self._work(key)
                if key not in self._again:
                    return
        finally:
            self._busy.discard(key)
