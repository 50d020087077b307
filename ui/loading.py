"""A page's database work on a worker thread, so the UI loop never waits for it.

NiceGUI serves every page, every live update and /healthz from one asyncio loop; a
report over a long run history takes seconds of database time. A page shows its
frame with a placeholder, sends it at once, and fills it in when the work is done
(NiceGUI's advice for long setup: await the connection, then `run.io_bound`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from nicegui import context, run, ui

P = ParamSpec("P")
R = TypeVar("R")

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
