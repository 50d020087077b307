"""Tasks: a live list with filters and search kept in the URL, keyset pages,
state chips, the create form and the run now / cancel / delete actions."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from nicegui import ui

from tme.controller.services.access import site_scope
from tme.controller.services.device_check import CHECKABLE
from tme.controller.services.policies import policies_of
from tme.controller.services.tasks import TaskFilters, list_tasks
from tme.controller.store.models import Task
from tme.errors import TMEError
from tme.states import TASK_STATUSES, task_status
from tme.ui import actions, live
from tme.ui.context import dashboard
from tme.ui.control import confirm_button, guarded
from tme.ui.session import Viewer
from tme.ui.task_form import OP_CHOICES, validate
from tme.ui.text import link, name, said
from tme.ui.theme import (
    frame,
    href,
    reload_banner,
    set_chip,
    sideways,
    sign_in_first,
    state_chip,
)

PAGE_SIZE = 50


def register() -> None:
    @ui.page("/tasks")
    def tasks_page(
        request: Request, status: str = "", site: str = "", q: str = "", cursor: str = ""
    ) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        try:  # as the API reads the filter: a report word names its state
            status = task_status(status) if status else ""
        except ValueError as exc:  # a typo matches no task: say so, as the API's 422 does
            with frame("Tasks", viewer):
                _filter_bar("", site, q)
                ui.label(f"status: {said(exc)}").classes("text-negative").mark("filter-problem")
            return
        # the grant limits the query itself (as the API's list does), so a page is full
        # of the viewer's tasks and the next-page cursor skips no one else's
        filters = TaskFilters(
            status=status or None,
            site=site or None,
            search=q or None,
            sites=site_scope(viewer.principal),
        )
        try:
            with dashboard().session() as session:
                rows, next_cursor = list_tasks(session, filters, limit=PAGE_SIZE, cursor=cursor)
                ids = [task.id for task in rows if task.id is not None]
                paused = {i for i, p in policies_of(session, ids).items() if p.paused}
        except TMEError as exc:
            rows, next_cursor, paused = [], None, set()
            ui.notify(said(exc), type="negative")
        with frame("Tasks", viewer):
            _filter_bar(status, site, q)
            if viewer.can("task.write"):
                ui.button("New task", icon="add", on_click=lambda: _create_dialog(viewer))
            banner, banner_text = reload_banner("new-tasks")
            chips = _task_rows(rows, viewer, paused)
            with ui.row().classes("gap-4"):
                if cursor:
                    ui.link("First page", href("/tasks?" + _query(status, site, q)))
                if next_cursor:
                    more = _query(status, site, q, next_cursor)
                    ui.link("Next page", href(f"/tasks?{more}"))

        # Newest first: a task made after the page opened has a larger id than any shown
        # and would top the first page; say so rather than move the rows under the mouse.
        newest = max(chips, default=0)
        new_ids: set[int] = set()

        def on_runs(changes: list[live.RunChange]) -> None:
            if not cursor:
                new_ids.update(
                    c.task_id
                    for c in changes
                    if c.task_id > newest and c.task_id not in chips and _listed(c, filters)
                )
                if new_ids:
                    many = "s" if len(new_ids) > 1 else ""
                    banner_text.text = f"{len(new_ids)} new task{many} since this page opened"
                    banner.set_visibility(True)
            seen = [c.task_id for c in changes if c.task_id in chips]
            if not seen:
                return
            for task_id, state in actions.task_statuses(seen).items():
                set_chip(chips[task_id], state)  # only the changed rows go to the browser

        live.run_changes.subscribe(on_runs)


def _listed(change: live.RunChange, filters: TaskFilters) -> bool:
    """Whether the change's task would be in this list (its description is not in the
    change, so a search matches the name only)."""
    if filters.sites is not None and change.site not in filters.sites:
        return False
    if filters.site and change.site != filters.site:
        return False
    if filters.status and change.to_state != filters.status:
        return False
    return not filters.search or filters.search.lower() in change.task_name.lower()


def _query(status: str, site: str, q: str, cursor: str = "") -> str:
    pairs = {"status": status, "site": site, "q": q, "cursor": cursor}
    return urlencode({k: v for k, v in pairs.items() if v})


def _filter_bar(status: str, site: str, q: str) -> None:
    with ui.row().classes("items-end gap-2"):
        state = ui.select(["", *TASK_STATUSES], value=status, label="State").classes("w-36")
        site_in = ui.input("Site", value=site).classes("w-36").mark("filter-site")
        search = ui.input("Search", value=q).classes("w-64").mark("filter-search")

        def apply() -> None:
            ui.navigate.to("/tasks?" + _query(state.value or "", site_in.value, search.value))

        for field in (site_in, search):  # Enter in a text field applies, as Filter does
            field.on("keydown.enter", apply)
        ui.button("Filter", on_click=apply).props("outline")


def _task_rows(rows: list[Task], viewer: Viewer, paused: set[int]) -> dict[int, ui.badge]:
    chips: dict[int, ui.badge] = {}
    with (
        sideways(),
        ui.grid(columns="4rem minmax(10rem, 1fr) 9rem 14rem 7rem auto").classes(
            "w-full items-center gap-x-4"
        ),
    ):
        for head in ("Id", "Name", "Op", "Target", "State", ""):
            ui.label(head).classes("font-medium text-gray-600")
        for task in rows:
            tid = task.id or 0
            ui.label(str(tid))
            link(task.name, href(f"/tasks/{tid}"))
            ui.label(name(task.op))
            ui.label(name("/".join(p for p in (task.site, task.agent, task.device) if p) or "-"))
            with ui.row().classes("items-center gap-1"):
                chips[tid] = state_chip(task.status)
                if tid in paused:  # nothing starts it on its own until it is resumed
                    ui.badge("paused", color="grey").props("outline").mark(f"paused-{tid}")
            with ui.row().classes("gap-1"):
                _action_buttons(task, viewer)
        if not rows:
            ui.label("No tasks match.").classes("text-gray-500")
    return chips


def check_button(viewer: Viewer, task: Task) -> None:
    """Check, on a device task the viewer may run: its agent says what the task would do
    now, and the check's run page opens (POST /api/v1/tasks/{id}/check)."""
    tid = task.id or 0
    if task.op not in CHECKABLE or not viewer.can("run.control", task.site):
        return
    opened = guarded(
        viewer,
        "run.control",
        task.site,
        actions.check,
        tid,
        then=lambda run_id: ui.navigate.to(href(f"/runs/{run_id}")),
    )
    ui.button("Check", on_click=opened).props("flat").mark(f"check-{tid}").tooltip(
        "Ask its agent what it would do now; nothing is written"
    )


def _action_buttons(task: Task, viewer: Viewer) -> None:
    tid = task.id or 0
    if viewer.can("run.control", task.site):
        ui.button(
            "Run now", on_click=guarded(viewer, "run.control", task.site, actions.run_now, tid)
        )
        ui.button("Cancel", on_click=guarded(viewer, "run.control", task.site, actions.cancel, tid))
        check_button(viewer, task)
    if viewer.can("task.write", task.site):
        # reload only once it is gone: a refusal (a run in flight) stays on screen
        delete = guarded(
            viewer,
            "task.write",
            task.site,
            actions.delete,
            tid,
            then=lambda _: ui.navigate.reload(),
        )
        question = f"Delete task {tid} ({name(task.name)})? Its runs go with it."
        confirm_button("Delete", question, delete, "delete")


def _create_dialog(viewer: Viewer) -> None:
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label("New task").classes("text-lg")
        fields = {
            "name": ui.input("Name").classes("w-full"),
            "op": ui.select(OP_CHOICES, value="modbus.read", label="Op").classes("w-full"),
            "site": ui.input("Site").classes("w-full"),
            "agent": ui.input("Agent").classes("w-full"),
            "device": ui.input("Device").classes("w-full"),
            "params": ui.input("Params (JSON)", value="{}").classes("w-full"),
            "timeout_s": ui.input("Timeout (s, optional)").classes("w-full"),
        }
        if viewer.can("schedule.manage"):  # an operator's schedule is refused: not offered
            fields["cron"] = ui.input("Schedule (cron, optional)").classes("w-full")
            zone = ui.input("Time zone of the schedule", value="UTC").classes("w-full")
            fields["timezone"] = zone
        for key, field in fields.items():
            field.mark(f"task-{key}").classes(f"task-{key}")
        problems = ui.column().classes("text-negative text-sm")

        def submit() -> None:
            problems.clear()
            body, errors = validate({k: f.value for k, f in fields.items()})
            principal = viewer.still("task.write")
            if principal is None:
                errors = ["your session ended or does not allow creating tasks"]
            if body is None or errors or principal is None:
                with problems:
                    for line in errors:
                        ui.label(line)
                return
            try:
                task_id = actions.create_task(principal, body)
            except TMEError as exc:
                with problems:
                    ui.label(said(exc.message))
                return
            dialog.close()
            ui.navigate.to(f"/tasks/{task_id}")

        with ui.row():
            ui.button("Create", on_click=submit).props('id="create-task"')
            ui.button("Close", on_click=dialog.close).props("flat")
    dialog.open()
