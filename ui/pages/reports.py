"""Reports: success rate and p50/p95 duration by op, agent, site or task over a
chosen period, busiest hours, top failure reasons, and the CSV export."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import Request
from nicegui import ui

from tme.controller import reports
from tme.controller.services.access import site_scope
from tme.controller.store.models import utcnow
from tme.ui.context import dashboard
from tme.ui.loading import off_the_loop, placeholder
from tme.ui.text import label, rows
from tme.ui.theme import frame, href, sign_in_first

PERIODS = {1: "last day", 7: "last week", 30: "last 30 days"}
CSV_EXPORT = "/api/v1/reports/summary.csv"  # the API's, beside the dashboard's mount


def _report(days: int, group_by: str, sites_in: Sequence[str] | None) -> reports.Summary:
    """The database work of the page (seconds over a long history): on a worker thread."""
    end = utcnow()
    with dashboard().session() as session:
        return reports.summary(session, end - timedelta(days=days), end, group_by, sites_in)


def register() -> None:
    @ui.page("/reports")
    async def reports_page(request: Request, days: str = "7", group_by: str = "op") -> None:
        # days as text: a period it does not offer (?days=week) shows the last week, as
        # ?days=3 does, not a raw 422
        viewer = sign_in_first(request)
        if viewer is None:
            return
        period_days = int(days) if days in {str(d) for d in PERIODS} else 7
        group_by = group_by if group_by in reports.GROUPINGS else "op"
        with frame("Reports", viewer):
            with ui.row().classes("items-end gap-2"):
                period = ui.select(PERIODS, value=period_days, label="Period").classes("w-40")
                period.mark("report-period")
                grouping = ui.select(list(reports.GROUPINGS), value=group_by, label="Group by")

                def apply() -> None:
                    query = urlencode({"days": period.value, "group_by": grouping.value})
                    ui.navigate.to(f"/reports?{query}")

                ui.button("Show", on_click=apply).props("outline")
                csv_query = urlencode({"days": period_days, "group_by": group_by})
                _plain_link("Export CSV", f"{CSV_EXPORT}?{csv_query}").mark("export-csv")
            body = placeholder("the report")
            ui.link("Tasks", href("/tasks"))
        # the API's report: the grant's sites
        granted = site_scope(viewer.principal)
        report = await off_the_loop(_report, period_days, group_by, granted)
        if report is None:  # the server is stopping
            return
        body.clear()
        with body:
            _show(report)


def _plain_link(text: str, target: str) -> ui.element:
    """An <a> to a URL outside the dashboard: ui.link would put the mount path (/ui)
    before a target starting with "/" and lead to the dashboard's 404. The API answers
    the CSV as an attachment, so the browser saves it and stays on the page."""
    with ui.element("a").classes("nicegui-link") as link:
        ui.label(text)
    link.props["href"] = target
    return link


def _show(report: reports.Summary) -> None:
    columns = [
        {"name": "key", "label": report.group_by, "field": "key", "align": "left"},
        {"name": "runs", "label": "runs", "field": "runs"},
        {"name": "success_rate", "label": "success rate", "field": "success_rate"},
        {"name": "p50_s", "label": "p50 (s)", "field": "p50_s"},
        {"name": "p95_s", "label": "p95 (s)", "field": "p95_s"},
        {"name": "failed", "label": "failed", "field": "failed"},
    ]
    groups = rows(vars(g) for g in report.groups)  # a task's, agent's or site's name
    ui.table(columns=columns, rows=groups, row_key="key").classes("w-full")
    with ui.row().classes("gap-8"):
        with ui.column():
            ui.label("Busiest hours (UTC)").classes("font-medium")
            for hour, count in report.busiest_hours:
                ui.label(f"{hour:02d}:00 — {_runs(count)}")
        with ui.column():
            ui.label("Top failure reasons").classes("font-medium")
            for reason, count in report.top_failure_reasons:
                label(f"{_runs(count)}: {reason}")


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"
