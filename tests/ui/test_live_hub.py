"""The dashboard's live hub: with no page open it reads no changes, only moves on."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tme.ui import live


class Feed:
    """The change feed as the hub uses it, counting the reads of rows."""

    agent_seq = 7

    def __init__(self) -> None:
        self.rows_read = 0
        self.top = 10

    def last_run_event_id(self) -> int:
        return self.top

    def last_log_id(self) -> int:
        return 3

    def runs_after(self, cursor: int) -> tuple[list[Any], int]:
        self.rows_read += 1
        return [SimpleNamespace(after=cursor)], self.top

    def logs_after(self, cursor: int) -> tuple[list[Any], int]:
        return [], cursor

    def agents_after(self, cursor: int) -> list[Any]:
        return []


async def _io_bound(func: Any, *args: Any) -> Any:
    return func(*args)


@pytest.fixture
def feed(monkeypatch: pytest.MonkeyPatch) -> Feed:
    feed = Feed()
    monkeypatch.setattr(live, "dashboard", lambda: SimpleNamespace(feed=feed))
    monkeypatch.setattr(live, "run", SimpleNamespace(io_bound=_io_bound))
    # The events are module globals: fresh ones per test, with no subscriber.
    monkeypatch.setattr(live, "run_changes", live.Event())
    monkeypatch.setattr(live, "agent_changes", live.Event())
    monkeypatch.setattr(live, "log_lines", live.Event())
    return feed


def test_no_page_open_reads_no_rows_but_keeps_the_cursor_current(feed: Feed) -> None:
    hub = live.LiveHub()
    asyncio.run(hub.tick())  # the first tick places the cursors
    feed.top = 25  # runs changed meanwhile
    asyncio.run(hub.tick())
    assert feed.rows_read == 0
    assert hub.run_cursor == 25  # a page opened now gets what changes from here on

    seen: list[Any] = []
    live.run_changes.subscribe(seen.append, unsubscribe_on_delete=False)
    feed.top = 30
    asyncio.run(hub.tick())
    assert feed.rows_read == 1 and seen == [[SimpleNamespace(after=25)]]


def test_a_tick_whose_read_was_canceled_raises_so_the_timer_stops(
    feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NiceGUI's io_bound answers None for a canceled call, swallowing the cancellation:
    # the dashboard's timer ticked on, and a controller whose start-up failed (RabbitMQ
    # unreachable) hung in asyncio.run's clean-up for ever instead of exiting.
    async def canceled(func: Any, *args: Any) -> None:
        return None

    monkeypatch.setattr(live, "run", SimpleNamespace(io_bound=canceled))
    hub = live.LiveHub()
    for _ in range(2):  # placing the cursors, then moving them on
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(hub.tick())
        hub.run_cursor = 0
    assert not hub.failures.failing  # a cancellation, not a failure to report
