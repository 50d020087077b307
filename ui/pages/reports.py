"""Reports: success rate and p50/p95 duration by op, agent, site or task over a
chosen period, busiest hours, top failure reasons, and the CSV export."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from fastapi import Request
from nicegui import ui

from tme.controller import reports
from tme.controller.services.access import site_scope
from tme.controller.store.models import utcnow
from tme.ui.context import dashboard
from tme.ui.theme import frame, href, sign_in_first

PERIODS = {1: "last day", 7: "last week", 30: "last 30 days"}


def register() -> None:
    @ui.page("/reports")
    def reports_page(request: Request, days: int = 7, group_by: str = "op") -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        days = days if days in PERIODS else 7
        group_by = group_by if group_by in reports.GROUPINGS else "op"
        end = utcnow()
        with dashboard().session() as session:
            report = reports.summary(
                session,
                end - timedelta(days=days),
                end,
                group_by,
                sites_in=site_scope(viewer.principal),  # the API's report: the grant's sites
            )
        with frame("Reports", viewer):
            with ui.row().classes("items-end gap-2"):
                period = ui.select(PERIODS, value=days, label="Period").classes("w-40")
                grouping = ui.select(list(reports.GROUPINGS), value=group_by, label="Group by")

                def apply() -> None:
                    query = urlencode({"days": period.value, "group_by": grouping.value})
                    ui.navigate.to(f"/reports?{query}")

                ui.button("Show", on_click=apply).props("outline")
                csv_query = urlencode({"days": days, "group_by": group_by})
                ui.link("Export CSV", f"/api/v1/reports/summary.csv?{csv_query}").props("download")
            columns = [
                {"name": "key", "label": group_by, "field": "key", "align": "left"},
                {"name": "runs", "label": "runs", "field": "runs"},
                {"name": "success_rate", "label": "success rate", "field": "success_rate"},
                {"name": "p50_s", "label": "p50 (s)", "field": "p50_s"},
                {"name": "p95_s", "label": "p95 (s)", "field": "p95_s"},
                {"name": "failed", "label": "failed", "field": "failed"},
            ]
            ui.table(columns=columns, rows=[vars(g) for g in report.groups], row_key="key").classes(
                "w-full"
            )
            with ui.row().classes("gap-8"):
                with ui.column():
                    ui.label("Busiest hours (UTC)").classes("font-medium")
                    for hour, count in report.busiest_hours:
                        ui.label(f"{hour:02d}:00 — {count} runs")
                with ui.column():
                    ui.label("Top failure reasons").classes("font-medium")
                    for reason, count in report.top_failure_reasons:
                        ui.label(f"{count} runs: {reason}")
            ui.link("Tasks", href("/tasks"))
