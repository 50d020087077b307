"""One run: the timeline of its state transitions, the live log, result values with units,
its workflow run, and cancel or retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from nicegui import ui
from sqlmodel import col, select

from tme.controller.services.point_values import readings_of
from tme.controller.services.queries import get_run_detail
from tme.controller.services.workflow_graph import workflow_of
from tme.controller.store.models import Device, Run, RunLog, Task
from tme.durations import duration_line
from tme.effect_text import effect_line
from tme.errors import NotFound
from tme.first_pass_text import first_pass_lines, first_pass_of, not_written
from tme.schemas import RunDetail
from tme.settings_models import SlowRunSettings
from tme.states import FINAL_STATES, is_late
from tme.ui import actions, live
from tme.ui.context import dashboard
from tme.ui.control import guarded
from tme.ui.session import Viewer
from tme.ui.text import label, name, said
from tme.ui.theme import frame, href, set_chip, sign_in_first, state_chip

SETTLING_POLL_S = 1.0


def units_of(session: Any, task: Task) -> dict[str, str]:
    """Point name -> unit, from the device profile presence reported."""
    if not task.device:
        return {}
    device = session.exec(
        select(Device).where(
            Device.site == task.site, Device.agent == task.agent, Device.name == task.device
        )
    ).first()
    points = device.points if device is not None else []
    return {str(p.get("name")): str(p.get("unit") or "") for p in points}


def result_rows(
    op: str, result: dict[str, Any] | None, units: dict[str, str], point: str | None
) -> list[tuple[str, Any, str]]:
    """(name, value, unit) to show: a read's points one a line (its result nests them
    under "values"), otherwise the result's own keys (a write's effect said in words)."""
    if op == "modbus.read":
        readings = readings_of(op, result)
        return [
            (name, reading.value, reading.unit or units.get(name, ""))
            for name, reading in readings.items()
        ]
    rows = []
    for key, value in (result or {}).items():
        if key == "first_pass" and first_pass_of(result) is not None:
            continue  # said in words above the rows (first_pass_lines)
        effect = effect_line(result) if key == "effect" else None
        if effect is not None:  # a write's params.expect: one line, not its mapping
            rows.append((key, effect, ""))
            continue
        unit = units.get(key) or (units.get(point or "") if key == "value" else "")
        rows.append((key, value, unit or ""))
    return rows


def register() -> None:
    @ui.page("/runs/{run_id}")
    def run_page(request: Request, run_id: str) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        with dashboard().session() as session:
            try:
                detail = get_run_detail(session, run_id, slow_rule())
            except NotFound:
                detail = None
            task = session.get(Task, detail.task_id) if detail else None
            if detail is None or task is None or not viewer.principal.sees_site(task.site):
                with frame("Run not found", viewer):
                    ui.label(f"There is no run {name(run_id)}.")
                return
            units = units_of(session, task)
            workflow_id = workflow_of(session, run_id)
        with frame(f"Run {run_id[:8]} of {name(task.name)}", viewer):
            with ui.row().classes("items-center gap-2"):
                state = state_chip(detail.state).mark("run-state")
                ui.link(f"task {task.id}", href(f"/tasks/{task.id}"))
                ui.link("workflow run", href(f"/workflows/{workflow_id}"))
                reason = label(detail.reason).classes("text-gray-700").mark("run-reason")
            with ui.row().classes("items-center gap-2 text-sm text-gray-600"):
                ui.label(f"cause: {name(detail.cause or 'unknown')}").mark("run-cause")
                settled = ui.label(settled_text(detail)).mark("run-settled")
            took = ui.label(duration_text(detail)).mark("run-duration")
            if viewer.can("run.control", task.site):
                _control_buttons(viewer, task.site, run_id)
            ui.label("Timeline").classes("text-lg")
            timeline = ui.timeline(side="right").classes("w-full")
            shown = {(e.to_state, e.at.isoformat()) for e in detail.events}
            with timeline:
                for event in detail.events:
                    late = is_late(event.from_state, event.to_state)
                    hop_entry(event.reason, event.to_state, event.at.isoformat(), late)
            ui.label("Result").classes("text-lg")
            result_box = ui.column()

            def show_result(result: dict[str, Any] | None, state: str) -> None:
                result_box.clear()
                with result_box:
                    if not result:  # a final run has none to come (canceled, expired)
                        ended = state in FINAL_STATES
                        text = "no result: the run ended without one" if ended else "no result yet"
                        ui.label(text).classes("text-gray-500").mark("run-result")
                    first = first_pass_of(result)
                    if first is not None:  # a stop's first writes: is the device safe?
                        colour = "text-negative" if not_written(first) else "text-positive"
                        for line in first_pass_lines(first, state in FINAL_STATES):
                            label(line).classes(f"{colour} font-medium").mark("run-first-pass")
                    point = task.params.get("point")
                    for key, value, unit in result_rows(task.op, result, units, point):
                        label(f"{key}: {value} {unit}".strip())

            show_result(detail.result, detail.state)
            shown_state = {"state": detail.state}
            ui.label("Log (times in UTC)").classes("text-lg")
            log = ui.log(max_lines=1000).classes("w-full h-48")
            last_log = {"id": 0}
            with dashboard().session() as session:
                for line in session.exec(
                    select(RunLog).where(RunLog.run_id == run_id).order_by(col(RunLog.id))
                ):
                    log.push(log_line(line.at, line.line))
                    last_log["id"] = line.id or 0

        def on_log(lines: list[live.LogLine]) -> None:
            fresh_lines = False
            for line in lines:  # lines arrive between state changes, as the agent logs them
                if line.run_id == run_id and line.log_id > last_log["id"]:
                    log.push(log_line(line.at, line.line))
                    last_log["id"] = line.log_id
                    fresh_lines = True
            if fresh_lines and shown_state["state"] not in FINAL_STATES:
                # What the agent says while the run goes on (a stop's first writes) comes
                # with a line in its log, in the same transaction: read the result again
                # (the run's row alone: a chatty run's whole log is not read each time).
                with dashboard().session() as session:
                    fresh = session.get(Run, run_id)
                    result, now = (fresh.result, fresh.state) if fresh else (None, "")
                if fresh is not None and now not in FINAL_STATES:  # its final change shows the rest
                    show_result(result, now)

        def on_runs(changes: list[live.RunChange]) -> None:
            mine = [
                c
                for c in changes
                if c.run_id == run_id and (c.to_state, c.at.isoformat()) not in shown
            ]
            for change in mine:
                shown.add((change.to_state, change.at.isoformat()))
                if not change.late:  # a late hop is in the timeline, the state stays
                    set_chip(state, change.to_state)
                    shown_state["state"] = change.to_state
                    reason.text = said(change.reason)
                with timeline:
                    hop_entry(change.reason, change.to_state, change.at.isoformat(), change.late)
            if mine:
                with dashboard().session() as session:
                    fresh = get_run_detail(session, run_id, slow_rule())
                    lines = session.exec(
                        select(RunLog)
                        .where(RunLog.run_id == run_id, col(RunLog.id) > last_log["id"])
                        .order_by(col(RunLog.id))
                    ).all()
                for line in lines:
                    log.push(log_line(line.at, line.line))
                    last_log["id"] = line.id or 0
                show_result(fresh.result, fresh.state)
                show_settled(fresh)

        def show_settled(fresh: RunDetail) -> None:
            settled.text = settled_text(fresh)
            took.text = duration_text(fresh)
            colour = "text-orange-700" if fresh.slow else "text-gray-600"
            took.classes(replace=f"text-sm {colour}")
            # Settling follows the final state (the workflow pass plans a retry and
            # decides dependents) with no hop of its own: look again until it is done.
            settling.active = fresh.state in FINAL_STATES and not fresh.settled

        def look_again() -> None:
            with dashboard().session() as session:
                show_settled(get_run_detail(session, run_id, slow_rule()))

        settling = ui.timer(SETTLING_POLL_S, look_again, active=False)
        show_settled(detail)
        live.run_changes.subscribe(on_runs)
        live.log_lines.subscribe(on_log)


def log_line(at: datetime, line: str) -> str:
    """A line of the run's log as the page shows it: its time, then what the agent said."""
    return f"{at:%H:%M:%S} {said(line)}"


def slow_rule() -> SlowRunSettings:
    return dashboard().settings.notifications.slow


def duration_text(run: RunDetail) -> str:
    """How long the run took against its task's usual ("" before it ends)."""
    return duration_line(run.took_s, run.usual_s, run.usual_runs, run.slow)


def settled_text(run: RunDetail) -> str:
    """Whether TME has acted on the run's outcome (docs/api.md, Status and settled)."""
    if run.state not in FINAL_STATES:
        return "outcome pending"
    if run.settled:
        return "settled: its retry and dependents are decided"
    return "settling: its retry and dependents are being decided"


def _control_buttons(viewer: Viewer, site: str | None, run_id: str) -> None:
    """Cancel and retry, through the same services as the API; the service refuses what
    the run's state does not allow (cancel a finished run, retry an unfinished one)."""

    def open_retry(new_id: object) -> None:
        ui.navigate.to(f"/runs/{new_id}")

    with ui.row().classes("gap-2"):
        ui.button(
            "Cancel run", on_click=guarded(viewer, "run.control", site, actions.cancel_run, run_id)
        )
        ui.button(
            "Retry",
            on_click=guarded(viewer, "run.control", site, actions.retry, run_id, then=open_retry),
        )


def hop_entry(reason: str, state: str, at: str, late: bool) -> None:
    """One hop of the timeline; a late one (it changed no state) greyed and marked."""
    colour = "grey" if late else None
    entry = ui.timeline_entry(said(reason), title=state, subtitle=at, color=colour)
    if late:
        entry.mark("late-hop")
