"""One task: what the fleet says of it (a target never seen, or a task its agent would
refuse as it stands), definition, schedule with next fire times, dependencies, run history
with a duration chart; new runs and state changes appear live."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from fastapi import Request
from nicegui import ui
from nicegui.run import io_bound
from sqlmodel import col, select

from tme.controller.services.access import site_scope
from tme.controller.services.queries import list_runs
from tme.controller.services.resources import list_resources
from tme.controller.services.tasks import fleet_notices, get_task, to_public
from tme.controller.services.workflow_graph import workflow_of, workflows_of
from tme.controller.store.models import Run, Task, TaskDependency
from tme.errors import NotFound
from tme.schemas import ResourcePublic
from tme.states import FINAL_STATES
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.pages.tasks import check_button
from tme.ui.session import Viewer
from tme.ui.text import label, name, said
from tme.ui.theme import frame, href, set_chip, sideways, sign_in_first, state_chip

# What the task's runs say of it, not what it is: the status chip, the fire times and
# the run history show them, live, where the definition would keep what the page
# opened with and contradict them.
RUN_FIELDS = {
    "status",
    "updated_at",
    "started_at",
    "finished_at",
    "latest_run_id",
    "next_fire_times",
    "settled",
    "warnings",
}


RUNS_SHOWN = 50  # the run history: the task's last 50 runs


def duration(run: Run) -> float | None:
    if run.started_at and run.finished_at:
        return round((run.finished_at - run.started_at).total_seconds(), 3)
    return None


def register() -> None:
    @ui.page("/tasks/{task_id}")
    def task_page(request: Request, task_id: str) -> None:
        # str, not int: an id cut short or typed by hand is no task, not a raw 422
        viewer = sign_in_first(request)
        if viewer is None:
            return
        number = int(task_id) if task_id.isdecimal() and len(task_id) < 19 else None
        if number is None or not _show_task(viewer, number):
            with frame("Task not found", viewer):
                ui.label(f"There is no task {name(task_id)}.")


def _resource_row(resource: ResourcePublic) -> None:
    """One resource of the task: free, or the run holding it (linked), and how many wait."""
    holder = resource.holder
    if holder is not None:
        text = (
            f"{name(resource.name)}: held by run {holder.run_id[:8]} of task {holder.task_id}"
            f" ({name(holder.task_name)}), {holder.state}"
        )
    else:
        text = f"{name(resource.name)}: " + (
            "held by a run of another site" if resource.held_elsewhere else "free"
        )
    if resource.waiting:
        text += f"; {len(resource.waiting)} run(s) waiting for it"
    with ui.row().classes("items-center gap-2 text-sm"):
        ui.label(text).mark(f"resource-{resource.name}")
        if holder is not None:
            ui.link("its run", href(f"/runs/{holder.run_id}"))


def _show_task(viewer: Viewer, task_id: int) -> bool:
    """The page of task `task_id`; False when the viewer has no such task to see."""
    board = dashboard()
    with board.session() as session:
        try:
            task = get_task(session, task_id)
        except NotFound:
            task = None
        if task is None or not viewer.principal.sees_site(task.site):
            return False
        public = to_public(task)
        runs, _ = list_runs(session, task_id, limit=RUNS_SHOWN)
        predecessors = session.exec(
            select(TaskDependency).where(TaskDependency.task_id == task_id)
        ).all()
        dependents = session.exec(
            select(TaskDependency).where(TaskDependency.predecessor_id == task_id)
        ).all()
        # an edge to a task on a site outside the grant is not the viewer's to see
        others = {d.predecessor_id for d in predecessors} | {d.task_id for d in dependents}
        seen = {
            other
            for other, site in session.exec(
                select(Task.id, Task.site).where(col(Task.id).in_(others))
            )
            if viewer.principal.sees_site(site)
        }
        predecessors = [d for d in predecessors if d.predecessor_id in seen]
        dependents = [d for d in dependents if d.task_id in seen]
        workflows = workflows_of(session, [r.id for r in runs])
        notices = fleet_notices(session, task)
        held = list_resources(session, site_scope(viewer.principal), public.resources)
    with frame(f"Task {task_id}: {name(public.name)}", viewer):
        with ui.row().classes("items-center gap-2"):
            ui.label("Status")
            status = state_chip(public.status).mark("task-status")
            check_button(viewer, task)
        fleet_box = ui.column().classes("w-full")
        shown_notices = _show_notices(fleet_box, notices)
        with ui.card().classes("w-full"):
            ui.label("Definition").classes("font-medium")
            definition = public.model_dump(mode="json", exclude=RUN_FIELDS)
            with sideways():
                ui.code(json.dumps(definition, indent=2), language="json")
        with ui.card().classes("w-full"):
            ui.label("Schedule").classes("font-medium")
            # The controller's own fire times: slots from the schedule's anchor (an
            # interval counts from when it was set or resumed), none while paused.
            if public.paused:
                ui.label(
                    "Paused: its schedule, trigger, dependencies and planned retries start"
                    " it again once resumed; Run now and Retry still start it."
                )
            elif not task.schedule:
                ui.label("Runs when created, triggered or when its dependencies settle.")
            zone = ZoneInfo(public.schedule.timezone if public.schedule else "UTC")
            for when in public.next_fire_times:
                ui.label(when.astimezone(zone).isoformat())  # in the site's time zone
        with ui.card().classes("w-full"):
            ui.label("Dependencies").classes("font-medium")
            for dep in predecessors:
                with ui.row():
                    ui.link(f"task {dep.predecessor_id}", href(f"/tasks/{dep.predecessor_id}"))
                    ui.label(f"→ this task, on {dep.on}")
            for dep in dependents:
                with ui.row():
                    ui.label(f"this task → on {dep.on}")
                    ui.link(f"task {dep.task_id}", href(f"/tasks/{dep.task_id}"))
            if not predecessors and not dependents:
                ui.label("none").classes("text-gray-500")
        with ui.card().classes("w-full"):
            # Of all the tasks naming one, one run at a time (docs/schedules.md).
            ui.label("Exclusive resources").classes("font-medium")
            names = ", ".join(name(r) for r in public.resources) or "none"
            ui.label(names).mark("task-resources")
            for resource in held:  # as the page was opened: who holds it, who waits
                _resource_row(resource)
        durations = [(r.created_at.strftime("%m-%d %H:%M:%S"), duration(r)) for r in runs]
        chart = ui.echart(
            {
                "title": {
                    "text": "Run duration (s), runs by creation time in UTC",
                    "textStyle": {"fontSize": 14},
                },
                "xAxis": {"type": "category", "data": [d for d, _ in reversed(durations)]},
                "yAxis": {"type": "value"},
                "series": [{"type": "line", "data": [v for _, v in reversed(durations)]}],
            }
        ).classes("w-full h-56")
        ui.label("Runs").classes("text-lg")
        history = ui.column().classes("w-full gap-1")
        chips: dict[str, ui.badge] = {}
        reasons: dict[str, ui.label] = {}
        rows: dict[str, ui.row] = {}  # newest last

        def add_run_row(run_id: str, state: str, when: str, reason: str) -> None:
            if run_id not in workflows:
                with dashboard().session() as session:
                    workflows[run_id] = workflow_of(session, run_id)
            with history, ui.row().classes("items-center gap-3") as row:
                chips[run_id] = state_chip(state)
                ui.link(run_id[:8], href(f"/runs/{run_id}"))
                ui.link("workflow", href(f"/workflows/{workflows[run_id]}")).classes("text-sm")
                ui.label(when).classes("text-sm text-gray-600")
                reasons[run_id] = label(reason).classes("text-sm").mark("run-reason")
            row.move(target_index=0)
            rows[run_id] = row
            if len(rows) > RUNS_SHOWN:  # the last 50, as the page opened with, however long open
                oldest = next(iter(rows))
                history.remove(rows.pop(oldest))
                del chips[oldest], reasons[oldest]

        for run in reversed(runs):
            add_run_row(run.id, run.state, run.created_at.isoformat(), run.reason)

    def on_runs(changes: list[live.RunChange]) -> None:
        for change in changes:
            if change.task_id != task_id or change.late:
                continue  # a late hop changed no state
            if change.run_id in chips:
                set_chip(chips[change.run_id], change.to_state)
                reasons[change.run_id].text = said(change.reason)  # why it failed, say
            else:
                add_run_row(change.run_id, change.to_state, change.at.isoformat(), change.reason)
            if change.latest:  # the task's status follows its latest run only
                set_chip(status, change.to_state)
        # a run that ended has a duration: timed out, rejected or canceled ones too
        if any(c.task_id == task_id and c.to_state in FINAL_STATES for c in changes):
            with dashboard().session() as session:
                latest, _ = list_runs(session, task_id, limit=RUNS_SHOWN)
            points = [(r.created_at.strftime("%m-%d %H:%M:%S"), duration(r)) for r in latest]
            chart.options["xAxis"]["data"] = [d for d, _ in reversed(points)]
            chart.options["series"][0]["data"] = [v for _, v in reversed(points)]
            chart.update()

    async def on_agents(changes: list[live.AgentChange]) -> None:
        # a presence at the task's site may lock its device out, hand it back, say it
        # stopped answering, or be its agent's first
        nonlocal shown_notices
        if not any(c.site == site for c in changes):
            return
        fresh = await io_bound(_notices_of, task_id)
        if fresh is not None and fresh != shown_notices:  # None: the server is stopping
            shown_notices = _show_notices(fleet_box, fresh)

    site = public.target.site if public.target else None
    live.run_changes.subscribe(on_runs)
    live.agent_changes.subscribe(on_agents)
    return True


def _notices_of(task_id: int) -> list[str]:
    with dashboard().session() as session:
        task = session.get(Task, task_id)
        return fleet_notices(session, task) if task is not None else []


def _show_notices(box: ui.column, notices: list[str]) -> list[str]:
    """What a create would be told today, or why its agent would refuse the task."""
    box.clear()
    with box:
        if notices:
            with ui.card().classes("w-full bg-amber-50"):
                ui.label("Fleet").classes("font-medium")
                for notice in notices:
                    label(notice).classes("text-amber-900").mark("fleet-notice")
    return notices
