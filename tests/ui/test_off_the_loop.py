"""The Reports and Fleet pages do their database work on a worker thread: NiceGUI serves
every page, live update and /healthz from one loop, which a long report would stall."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User
from test_live_pages import LIVE, _device, _latest_run, _new_run, _read_result, _succeed, _task

from tme.controller import reports
from tme.controller.services import fleet, point_values


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[bool]:
    """Whether each call of module.name ran on the UI loop's thread."""
    calls: list[bool] = []
    original = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(_on_the_loop())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


async def test_the_report_is_counted_on_a_worker_thread(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    _succeed(board, _latest_run(board, _task(board)))
    on_loop = _spy(monkeypatch, reports, "summary")
    sign_in(user, "viewer")
    await user.open("/reports")
    await user.should_see(kind=ui.table)
    assert on_loop == [False]


async def test_fleet_reads_devices_and_values_on_a_worker_thread(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    _device(board)
    task_id = _task(board)
    _succeed(board, _latest_run(board, task_id), _read_result(41.25))
    listed = _spy(monkeypatch, fleet, "list_devices")
    read = _spy(monkeypatch, point_values, "latest_values")
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("41.25")
    _succeed(board, _new_run(board, task_id), _read_result(57.5))
    await user.should_see("57.5", retries=LIVE)  # the live refresh reads off the loop too
    assert listed == [False]
    assert len(read) >= 2 and not any(read)


async def test_the_overview_counts_on_a_worker_thread(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its count of runs by state covers every run kept, on opening and on every live
    refresh (up to four a second while runs move)."""
    from tme.ui.pages import overview

    task_id = _task(board)
    counted = _spy(monkeypatch, overview, "runs_by_state")
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see("pending: 1")
    _succeed(board, _latest_run(board, task_id))
    await user.should_see("succeeded: 1", retries=LIVE)
    assert len(counted) >= 2 and not any(counted)
