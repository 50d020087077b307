"""A workflow run: the graph of its steps, each coloured by its state, updated live."""

from __future__ import annotations

import re

from fastapi import Request
from nicegui import ui

from tme.controller.services.workflow_cancel import no_workflow_run
from tme.controller.services.workflow_graph import WorkflowGraph, workflow_graph
from tme.states import FINAL_STATES
from tme.ui import actions, live
from tme.ui.context import dashboard
from tme.ui.control import confirm_button, guarded
from tme.ui.session import Viewer
from tme.ui.text import link, name
from tme.ui.theme import frame, href, set_chip, sign_in_first, state_chip

# Node fill per state, in the colours of the state chips (Quasar's palette).
FILLS = {
    "not_started": "#e0e0e0",
    "pending": "#90a4ae",
    "waiting": "#90a4ae",
    "queued": "#5c6bc0",
    "dispatched": "#5c6bc0",
    "delivered": "#5c6bc0",
    "accepted": "#1976d2",
    "running": "#1976d2",
    "succeeded": "#21ba45",
    "failed": "#c10015",
    "timed_out": "#c10015",
    "lost": "#c10015",
    "rejected": "#f2c037",
    "expired": "#f2c037",
    "canceled": "#9e9e9e",
    "skipped": "#9e9e9e",
}
DARK_TEXT = {"not_started", "rejected", "expired"}


def state_class(state: str) -> str:
    return state.replace(" ", "_")


def _label(text: str) -> str:
    """Task names are free text: keep what cannot break out of a quoted Mermaid label."""
    return re.sub(r"[^\w .,:/+-]", " ", text)[:60].strip() or "task"


def to_mermaid(graph: WorkflowGraph) -> str:
    """A left-to-right flowchart: one node per step, classed (coloured) by its state."""
    lines = ["flowchart LR"]
    for step in graph.steps.values():
        lines.append(
            f'  t{step.task_id}["{_label(step.name)}<br/>{step.state}"]:::{state_class(step.state)}'
        )
    for before, after, on in graph.edges:
        lines.append(f"  t{before} -->|{on}| t{after}")
    for state in sorted({state_class(s.state) for s in graph.steps.values()}):
        text = "#000" if state in DARK_TEXT else "#fff"
        lines.append(f"  classDef {state} fill:{FILLS.get(state, '#9e9e9e')},color:{text}")
    return "\n".join(lines)


def visible_graph(workflow_id: str, viewer: Viewer) -> WorkflowGraph | None:
    """The graph limited to the steps on sites the viewer may see (None: nothing to see)."""
    with dashboard().session() as session:
        graph = workflow_graph(session, workflow_id)
    if graph is None:
        return None
    graph.steps = {k: s for k, s in graph.steps.items() if viewer.principal.sees_site(s.site)}
    graph.edges = [e for e in graph.edges if e[0] in graph.steps and e[1] in graph.steps]
    return graph if graph.run_ids else None


def _not_found(workflow_id: str, viewer: Viewer) -> None:
    """No workflow run has this id; a step's run id (copied from a run page) links to the
    workflow run that run is in, as the API's 404 names it."""
    with dashboard().session() as session:
        details = no_workflow_run(session, viewer.principal, workflow_id).details
    with frame("Workflow run not found", viewer):
        ui.label(f"There is no workflow run {name(workflow_id)}.")
        found = details.get("run_workflow_id") if isinstance(details, dict) else None
        if found:
            with ui.row().classes("items-center gap-1"):
                ui.label(f"Run {workflow_id[:8]} is a step of")
                ui.link(f"workflow run {found[:8]}", href(f"/workflows/{found}")).mark(
                    "its-workflow-run"
                )


def _going(graph: WorkflowGraph) -> bool:
    """Whether a run of the workflow run is still going (the Cancel button shows then)."""
    return any(step.run_id and step.state not in FINAL_STATES for step in graph.steps.values())


def _cancel_button(viewer: Viewer, workflow_id: str) -> ui.button:
    """Stop the whole workflow run, after asking (as POST /api/v1/workflows/{id}/cancel);
    the service refuses one that is over, or one with runs on sites outside the grant."""
    cancel = guarded(viewer, "run.control", None, actions.cancel_workflow, workflow_id)
    question = (
        f"Cancel workflow run {workflow_id[:8]}? Its runs still going are canceled and none"
        " of its steps starts afterwards, its alarm and clean-up steps (on failure, on"
        " any) included."
    )
    return confirm_button("Cancel workflow run", question, cancel, "cancel-workflow")


def register() -> None:
    @ui.page("/workflows/{workflow_id}")
    def workflow_page(request: Request, workflow_id: str) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        graph = visible_graph(workflow_id, viewer)
        if graph is None:
            _not_found(workflow_id, viewer)
            return
        with frame(f"Workflow run {workflow_id[:8]}", viewer):
            diagram = ui.mermaid(to_mermaid(graph)).classes("w-full").mark("workflow-graph")
            ui.label("Steps").classes("text-lg")
            steps = ui.column().classes("w-full gap-1")
            chips: dict[int, ui.badge] = {}

            def show_steps(graph: WorkflowGraph) -> None:
                steps.clear()
                chips.clear()
                with steps:
                    for step in graph.steps.values():
                        with ui.row().classes("items-center gap-3"):
                            chips[step.task_id] = state_chip(step.state)
                            link(step.name, href(f"/tasks/{step.task_id}"))
                            if step.run_id:
                                ui.link(f"run {step.run_id[:8]}", href(f"/runs/{step.run_id}"))
                            if step.runs > 1:
                                ui.label(f"{step.runs} attempts").classes("text-sm")

            show_steps(graph)
            shown = {"graph": graph}
            # shown while a run of it is going: a workflow run that is over is refused
            button = _cancel_button(viewer, workflow_id) if viewer.can("run.control") else None
            if button is not None:
                button.visible = _going(graph)

        def on_runs(changes: list[live.RunChange]) -> None:
            known = shown["graph"]
            if not any(c.task_id in known.steps for c in changes):
                return
            fresh = visible_graph(workflow_id, viewer)
            if fresh is None:
                return
            if set(fresh.steps) != set(known.steps) or [
                (s.run_id, s.runs) for s in fresh.steps.values()
            ] != [(s.run_id, s.runs) for s in known.steps.values()]:
                show_steps(fresh)  # a step started or was retried: new links
            else:
                for task_id, step in fresh.steps.items():
                    set_chip(chips[task_id], step.state)
            diagram.set_content(to_mermaid(fresh))
            shown["graph"] = fresh
            if button is not None:
                button.visible = _going(fresh)

        live.run_changes.subscribe(on_runs)
