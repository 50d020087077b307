"""Overview: runs by state, runs per minute, failures in the last 24 h, the fleet.

Every number counts only the sites the viewer is granted, as the API's reports do:
runs by their task's site, agents and sites by their own.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi import Request
from nicegui import ui
from sqlalchemy import func
from sqlmodel import Session, col, select

from tme.controller.reports import FAILED
from tme.controller.services import fleet
from tme.controller.services.access import site_scope, within_scope
from tme.controller.services.roles import Principal
from tme.controller.store.models import Agent, Run, Task, utcnow
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.theme import frame, href, sign_in_first, state_chip


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


def recent_failures(
    session: Session, principal: Principal, hours: int = 24, limit: int = 20
) -> list[tuple[Run, Task]]:
    since = utcnow() - timedelta(hours=hours)
    query = (
        select(Run, Task)
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(col(Run.finished_at) >= since, col(Run.state).in_(list(FAILED)))
        .order_by(col(Run.finished_at).desc())
        .limit(limit)
    )
    return list(session.exec(within_scope(query, Task.site, principal)).all())


def agents_online(session: Session, principal: Principal) -> tuple[int, int]:
    query = select(Agent.online).where(Agent.role == "agent")
    agents = session.exec(within_scope(query, Agent.site, principal)).all()
    return sum(1 for a in agents if a), len(agents)


def register() -> None:
    @ui.page("/")
    def overview(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        principal = viewer.principal
        with dashboard().session() as session:
            by_state = runs_by_state(session, principal)
            per_minute = runs_per_minute(session, principal)
            failures = recent_failures(session, principal)
            online, total = agents_online(session, principal)
            sites = fleet.list_sites(session, sites_in=site_scope(principal))
        with frame("Overview", viewer):
            with ui.row().classes("gap-4"):
                with ui.card():
                    ui.label("Agents online").classes("text-sm text-gray-600")
                    agents_label = (
                        ui.label(f"{online} / {total}").classes("text-3xl").mark("overview-agents")
                    )
                with ui.card():
                    ui.label("Sites").classes("text-sm text-gray-600")
                    ui.label(str(len(sites))).classes("text-3xl").mark("overview-sites")
                with ui.card():
                    ui.label("Failures (24 h)").classes("text-sm text-gray-600")
                    ui.label(str(len(failures))).classes("text-3xl").mark("overview-failures")
            with ui.card().classes("w-full"):
                ui.label("Runs by state").classes("font-medium")
                with ui.row().classes("gap-2") as states_row:
                    for state, count in sorted(by_state.items()):
                        state_chip(state, f"{state}: {count}")
            chart = ui.echart(
                {
                    "title": {"text": "Runs per minute (last hour)", "textStyle": {"fontSize": 14}},
                    "xAxis": {"type": "category", "data": [m for m, _ in per_minute]},
                    "yAxis": {"type": "value", "minInterval": 1},
                    "series": [{"type": "bar", "data": [n for _, n in per_minute]}],
                }
            ).classes("w-full h-64")
            with ui.card().classes("w-full"):
                ui.label("Failures in the last 24 hours").classes("font-medium")
                if not failures:
                    ui.label("none").classes("text-gray-500")
                for run, task in failures:
                    with ui.row().classes("items-center gap-2"):
                        state_chip(run.state)
                        ui.link(task.name, href(f"/runs/{run.id}"))
                        ui.label(run.reason).classes("text-sm text-gray-600")

        def refresh(_changes: object) -> None:
            with dashboard().session() as session:
                counts = runs_by_state(session, principal)
                minutes = runs_per_minute(session, principal)
                up, all_agents = agents_online(session, principal)
            states_row.clear()
            with states_row:
                for state, count in sorted(counts.items()):
                    state_chip(state, f"{state}: {count}")
            chart.options["series"][0]["data"] = [n for _, n in minutes]
            chart.options["xAxis"]["data"] = [m for m, _ in minutes]
            chart.update()
            agents_label.text = f"{up} / {all_agents}"

        live.run_changes.subscribe(refresh)
        live.agent_changes.subscribe(refresh)
