"""Overview: runs by state, runs per minute, failures in the last 24 h, the fleet
(agents online, devices not answering their agents or locked out at them).

Every number counts only the sites the viewer is granted, as the API's reports do:
runs by their task's site, agents and sites by their own.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, NamedTuple

from fastapi import Request
from nicegui import run, ui
from sqlalchemy import func
from sqlmodel import Session, col, select

from tme.controller.reports import FAILED
from tme.controller.services import fleet
from tme.controller.services.access import site_scope, within_scope
from tme.controller.services.roles import Principal
from tme.controller.store.models import Agent, Run, Task, utcnow
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.loading import OneAtATime, off_the_loop, placeholder
from tme.ui.text import label, link
from tme.ui.theme import frame, href, sign_in_first, state_chip

# Without changes the figures still age: the chart's last hour moves a minute on, a
# failure leaves the last 24 h. A refresh a minute keeps a wall screen current.
CLOCK_REFRESH_S = 60.0


def _runs_of(query: Any, principal: Principal) -> Any:
    """`query` over runs limited to runs of tasks on the viewer's sites."""
    if site_scope(principal) is None:
        return query
    return within_scope(query.join(Task, col(Task.id) == col(Run.task_id)), Task.site, principal)


def runs_by_state(session: Session, principal: Principal) -> dict[str, int]:
    query = select(Run.state, func.count()).group_by(Run.state)
    return dict(session.exec(_runs_of(query, principal)).all())


def runs_per_minute(
    session: Session, principal: Principal, minutes: int = 60
) -> list[tuple[str, int]]:
    """Runs created per minute over the last `minutes`, oldest first, zeros included."""
    now = utcnow().replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes - 1)
    query = select(Run.created_at).where(col(Run.created_at) >= since)
    created = session.exec(_runs_of(query, principal)).all()
    counts = Counter(at.replace(second=0, microsecond=0) for at in created)
    return [
        ((since + timedelta(minutes=i)).strftime("%H:%M"), counts[since + timedelta(minutes=i)])
        for i in range(minutes)
    ]


def _failed_since(query: Any, principal: Principal, hours: int) -> Any:
    """`query` over runs joined to their tasks, limited to the failures of the last
    `hours` on the viewer's sites."""
    since = utcnow() - timedelta(hours=hours)
    query = query.join(Task, col(Task.id) == col(Run.task_id)).where(
        col(Run.finished_at) >= since, col(Run.state).in_(list(FAILED))
    )
    return within_scope(query, Task.site, principal)


def recent_failures(
    session: Session, principal: Principal, hours: int = 24, limit: int = 20
) -> list[tuple[Run, Task]]:
    """The latest `limit` failures of the last `hours`, newest first."""
    query = _failed_since(select(Run, Task), principal, hours)
    return list(session.exec(query.order_by(col(Run.finished_at).desc()).limit(limit)).all())


def failures_count(session: Session, principal: Principal, hours: int = 24) -> int:
    """Every failure of the last `hours` (the list shows the latest of them only)."""
    query = _failed_since(select(func.count()).select_from(Run), principal, hours)
    return int(session.exec(query).one())


def agents_online(session: Session, principal: Principal) -> tuple[int, int]:
    query = select(Agent.online).where(Agent.role == "agent")
    agents = session.exec(within_scope(query, Agent.site, principal)).all()
    return sum(1 for a in agents if a), len(agents)


class Attention(NamedTuple):
    """Devices of online agents that need an operator: not answering, locked out,
    stopped."""

    down: int
    locked: int
    stopped: int = 0


def devices_needing_attention(session: Session, principal: Principal) -> Attention:
    """As their agents last said (presence); an offline agent's devices are left to
    the agents' count."""
    query = select(Agent.site, Agent.name).where(Agent.role == "agent", col(Agent.online))
    online = set(session.exec(within_scope(query, Agent.site, principal)).all())
    devices = [
        d
        for d in fleet.list_devices(session, sites_in=site_scope(principal))
        if (d.site, d.agent) in online
    ]
    return Attention(
        sum(1 for d in devices if d.link is not None and d.link.state == "down"),
        sum(1 for d in devices if d.lockout is not None),
        sum(1 for d in devices if d.stopped is not None),
    )


class Figures(NamedTuple):
    """What the overview shows, read in one trip to a worker thread."""

    by_state: dict[str, int]
    per_minute: list[tuple[str, int]]
    failures: list[tuple[Run, Task]]
    failed: int  # failures of the last 24 h, all of them
    online: int
    agents: int
    sites: int
    attention: Attention


def figures(principal: Principal) -> Figures:
    """The overview's database work (a count over every run kept): off the UI loop."""
    with dashboard().session() as session:
        online, agents = agents_online(session, principal)
        return Figures(
            runs_by_state(session, principal),
            runs_per_minute(session, principal),
            recent_failures(session, principal),
            failures_count(session, principal),
            online,
            agents,
            len(fleet.list_sites(session, sites_in=site_scope(principal))),
            devices_needing_attention(session, principal),
        )


def register() -> None:
    @ui.page("/")
    async def overview(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        principal = viewer.principal
        with frame("Overview", viewer):
            body = placeholder("the overview")
        shown = await off_the_loop(figures, principal)
        if shown is None:  # the server is stopping
            return
        body.clear()
        with body:
            board = _show(shown)
        refresh = _Refresh(principal, board)
        live.run_changes.subscribe(refresh)
        live.agent_changes.subscribe(refresh)
        # the last hour and the last 24 h move on with no change to tell of
        ui.timer(CLOCK_REFRESH_S, lambda: refresh(None), immediate=False)


class _Board(NamedTuple):
    """The parts of the page a live refresh changes."""

    agents_label: ui.label
    sites_label: ui.label
    failed_label: ui.label
    states_row: ui.row
    chart: ui.echart
    attention: ui.label
    failures: ui.column
    listed: list[str]  # the runs the failures list shows, newest first


def _show(shown: Figures) -> _Board:
    with ui.row().classes("gap-4"):
        with ui.card():
            ui.label("Agents online").classes("text-sm text-gray-600")
            agents_label = ui.label().classes("text-3xl").mark("overview-agents")
        with ui.card():
            ui.label("Sites").classes("text-sm text-gray-600")
            sites_label = ui.label().classes("text-3xl").mark("overview-sites")
        with ui.card():
            ui.label("Failures (24 h)").classes("text-sm text-gray-600")
            failed_label = ui.label().classes("text-3xl").mark("overview-failures")
        with ui.card():
            ui.label("Devices needing attention").classes("text-sm text-gray-600")
            attention = ui.label().classes("text-xl").mark("overview-devices")
            ui.link("see the fleet", href("/fleet")).classes("text-sm")
    with ui.card().classes("w-full"):
        ui.label("Runs by state").classes("font-medium")
        states_row = ui.row().classes("gap-2")
    chart = ui.echart(
        {
            "title": {"text": "Runs per minute (last hour, UTC)", "textStyle": {"fontSize": 14}},
            "xAxis": {"type": "category", "data": []},
            "yAxis": {"type": "value", "minInterval": 1},
            "series": [{"type": "bar", "data": []}],
        }
    ).classes("w-full h-64")
    with ui.card().classes("w-full"):
        ui.label("Failures in the last 24 hours").classes("font-medium")
        failures = ui.column().classes("gap-1")
    # "-" is no run id: the first fill draws the list, "none" included
    board = _Board(
        agents_label, sites_label, failed_label, states_row, chart, attention, failures, ["-"]
    )
    _fill(board, shown)
    return board


def _fill(board: _Board, shown: Figures) -> None:
    """Put the figures on the page (on opening and on each live refresh)."""
    board.agents_label.text = f"{shown.online} / {shown.agents}"
    board.sites_label.text = str(shown.sites)
    board.failed_label.text = str(shown.failed)
    board.attention.text = _attention(shown.attention)
    board.states_row.clear()
    with board.states_row:
        _state_chips(shown.by_state)
    board.chart.options["series"][0]["data"] = [n for _, n in shown.per_minute]
    board.chart.options["xAxis"]["data"] = [m for m, _ in shown.per_minute]
    board.chart.update()
    listed = [failed.id for failed, _ in shown.failures]
    if listed == board.listed:
        return  # the list goes to the browser again only when it changed
    board.listed[:] = listed
    board.failures.clear()
    with board.failures:
        if not shown.failures:
            ui.label("none").classes("text-gray-500")
        for failed, task in shown.failures:
            with ui.row().classes("items-center gap-2"):
                state_chip(failed.state)
                link(task.name, href(f"/runs/{failed.id}")).mark("overview-failure")
                label(failed.reason).classes("text-sm text-gray-600").mark("overview-reason")


def _attention(attention: Attention) -> str:
    said = f"{attention.down} not answering, {attention.locked} locked out"
    return said + (f", {attention.stopped} stopped" if attention.stopped else "")


def _state_chips(by_state: dict[str, int]) -> None:
    for state, count in sorted(by_state.items()):
        state_chip(state, f"{state}: {count}")


class _Refresh:
    """A live refresh of every figure, read on a worker thread (OneAtATime)."""

    def __init__(self, principal: Principal, board: _Board) -> None:
        self.principal, self.board = principal, board
        self._redraw = OneAtATime(self._read_and_show)

    async def __call__(self, _changes: object) -> None:
        await self._redraw(None)

    async def _read_and_show(self, _key: None) -> None:
        shown = await run.io_bound(figures, self.principal)
        if shown is not None:  # None: the server is stopping
            _fill(self.board, shown)
