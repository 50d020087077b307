"""Overview: runs by state, runs per minute, failures in the last 24 h, the fleet."""

from __future__ import annotations

from fastapi import Request
from nicegui import ui

from tme.controller import reports
from tme.controller.services import fleet
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.theme import frame, href, sign_in_first, state_chip


def register() -> None:
    @ui.page("/")
    def overview(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        with dashboard().session() as session:
            by_state = reports.runs_by_state(session)
            per_minute = reports.runs_per_minute(session)
            failures = reports.recent_failures(session)
            online, total = reports.agents_online(session)
            sites = fleet.list_sites(session)
        with frame("Overview", viewer):
            with ui.row().classes("gap-4"):
                with ui.card():
                    ui.label("Agents online").classes("text-sm text-gray-600")
                    agents_label = ui.label(f"{online} / {total}").classes("text-3xl")
                with ui.card():
                    ui.label("Sites").classes("text-sm text-gray-600")
                    ui.label(str(len(sites))).classes("text-3xl")
                with ui.card():
                    ui.label("Failures (24 h)").classes("text-sm text-gray-600")
                    ui.label(str(len(failures))).classes("text-3xl")
            with ui.card().classes("w-full"):
                ui.label("Runs by state").classes("font-medium")
                with ui.row().classes("gap-2") as states_row:
                    for state, count in sorted(by_state.items()):
                        state_chip(f"{state}: {count}")
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
                counts = reports.runs_by_state(session)
                minutes = reports.runs_per_minute(session)
                up, all_agents = reports.agents_online(session)
            states_row.clear()
            with states_row:
                for state, count in sorted(counts.items()):
                    state_chip(f"{state}: {count}")
            chart.options["series"][0]["data"] = [n for _, n in minutes]
            chart.options["xAxis"]["data"] = [m for m, _ in minutes]
            chart.update()
            agents_label.text = f"{up} / {all_agents}"

        live.run_changes.subscribe(refresh)
        live.agent_changes.subscribe(refresh)
