"""Changes to every open page, within a second, without reloading.

One global timer on the UI loop reads the change feed (run transitions from the
database by id, agent presence from the ring the bus thread fills) and emits
them as NiceGUI events; pages subscribe and update only the rows that changed.
Nothing here runs on a library thread, so no element is touched from one.
"""

from __future__ import annotations

from nicegui import Event, app, run

from tme.controller.change_feed import AgentChange, RunChange
from tme.ui.context import dashboard

TICK_S = 0.25  # well inside the one second a change may take to reach a page

run_changes: Event[list[RunChange]] = Event()
agent_changes: Event[list[AgentChange]] = Event()


class LiveHub:
    def __init__(self) -> None:
        self.run_cursor: int | None = None
        self.agent_cursor = 0

    async def tick(self) -> None:
        feed = dashboard().feed
        if feed is None:  # the controller is still starting
            return
        if self.run_cursor is None:
            self.run_cursor = await run.io_bound(feed.last_run_event_id)
            self.agent_cursor = feed.agent_seq
            return
        found = await run.io_bound(feed.runs_after, self.run_cursor)
        if found is None:  # the UI loop is shutting down
            return
        runs, self.run_cursor = found
        agents = feed.agents_after(self.agent_cursor)
        if agents:
            self.agent_cursor = agents[-1].seq
            agent_changes.emit(agents)
        if runs:
            run_changes.emit(runs)


def start_live_updates() -> LiveHub:
    """Fresh events (no subscriber of an earlier set of pages) and the global timer."""
    global run_changes, agent_changes
    run_changes, agent_changes = Event(), Event()
    hub = LiveHub()
    app.timer(TICK_S, hub.tick)
    return hub
