"""Changes to every open page, within a second, without reloading.

One global timer on the UI loop reads the change feed (run transitions and run log
lines from the database by id, agent presence from the ring the bus thread fills)
and emits them as NiceGUI events; pages subscribe and update only the rows that
changed. With no page open it only keeps its cursors at the present. Nothing here
runs on a library thread, so no element is touched from one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from nicegui import Event, app, run

from tme.controller.change_feed import AgentChange, ChangeFeed, LogLine, RunChange
from tme.failure_log import FailureLog
from tme.ui.context import dashboard

log = logging.getLogger("tme.ui")

T = TypeVar("T")

TICK_S = 0.25  # well inside the one second a change may take to reach a page

run_changes: Event[list[RunChange]] = Event()
agent_changes: Event[list[AgentChange]] = Event()
log_lines: Event[list[LogLine]] = Event()


def _read(
    feed: ChangeFeed, run_cursor: int, log_cursor: int
) -> tuple[list[RunChange], int, list[LogLine], int]:
    """Both database reads of one tick, in one trip to a worker thread."""
    runs, run_cursor = feed.runs_after(run_cursor)
    lines, log_cursor = feed.logs_after(log_cursor)
    return runs, run_cursor, lines, log_cursor


def _start(feed: ChangeFeed) -> tuple[int, int]:
    return feed.last_run_event_id(), feed.last_log_id()


def _watched() -> bool:
    """Whether a page listens: with none open, changes are not read at all (at 100 runs
    a second, reading and building them cost the controller half a millisecond a run)."""
    return any(event.callbacks for event in (run_changes, agent_changes, log_lines))


class LiveHub:
    def __init__(self) -> None:
        self.run_cursor: int | None = None
        self.log_cursor = 0
        self.agent_cursor = 0
        # NiceGUI logs a traceback for each tick that raises: four a second through a
        # database outage. The hub logs the first, then once a minute while it lasts.
        self.failures = FailureLog(log, "dashboard live update")

    async def tick(self) -> None:
        try:
            await self._tick()
        except Exception as exc:
            self.failures.failed(exc)
        else:
            self.failures.passed()

    async def _tick(self) -> None:
        feed = dashboard().feed
        if feed is None:  # the controller is still starting
            return
        if self.run_cursor is None:
            self.run_cursor, self.log_cursor = await _in_thread(_start, feed)
            self.agent_cursor = feed.agent_seq
            return
        if not _watched():  # no page open: keep the cursors current, read no rows
            self.run_cursor, self.log_cursor = await _in_thread(_start, feed)
            self.agent_cursor = feed.agent_seq
            return
        found = await _in_thread(_read, feed, self.run_cursor, self.log_cursor)
        runs, self.run_cursor, lines, self.log_cursor = found
        agents = feed.agents_after(self.agent_cursor)
        if agents:
            self.agent_cursor = agents[-1].seq
            agent_changes.emit(agents)
        if lines:
            log_lines.emit(lines)
        if runs:
            run_changes.emit(runs)


async def _in_thread(read: Callable[..., T], *args: Any) -> T:
    """`read(*args)` on a worker thread. NiceGUI answers None for a call that was
    canceled (or made while it shuts down), swallowing the cancellation: the timer then
    ticked on, and a loop being closed (a controller whose start-up failed) waited for
    it for ever. Raised again here, the timer stops."""
    result = await run.io_bound(read, *args)
    if result is None:
        raise asyncio.CancelledError
    return result


def start_live_updates() -> LiveHub:
    """Fresh events (no subscriber of an earlier set of pages) and the global timer."""
    global run_changes, agent_changes, log_lines
    run_changes, agent_changes, log_lines = Event(), Event(), Event()
    hub = LiveHub()
    app.timer(TICK_S, hub.tick)
    return hub
