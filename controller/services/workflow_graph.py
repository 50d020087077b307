"""One workflow run as a graph: its steps (tasks) with their latest run and state.

A workflow run is the set of runs sharing a `run_links.workflow_id` (the first
run's id); a run without a link is a workflow run of its own. The steps are the
tasks that ran in it, the tasks downstream of them that have not started yet, and
the predecessors a join still waits for; the edges are the task dependencies
among them, labelled with the outcome each needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from tme.controller.store.models import Run, Task, TaskDependency
from tme.controller.store.workflow_models import RunLink

NOT_STARTED = "not started"
MAX_STEPS = 200  # a graph past this is cut: more nodes than a page can show legibly


@dataclass
class Step:
    task_id: int
    name: str
    site: str | None
    state: str = NOT_STARTED
    run_id: str | None = None
    runs: int = 0  # attempts of this step in the workflow run (retries included)


@dataclass
class WorkflowGraph:
    workflow_id: str
    steps: dict[int, Step] = field(default_factory=dict)
    edges: list[tuple[int, int, str]] = field(default_factory=list)  # predecessor, task, on

    @property
    def run_ids(self) -> set[str]:
        return {s.run_id for s in self.steps.values() if s.run_id}


def workflow_of(session: Session, run_id: str) -> str:
    """The workflow run a run belongs to (its own id when it was never linked)."""
    link = session.get(RunLink, run_id)
    return link.workflow_id if link is not None else run_id


def workflows_of(session: Session, run_ids: Iterable[str]) -> dict[str, str]:
    ids = list(run_ids)
    links = session.exec(select(RunLink).where(col(RunLink.run_id).in_(ids))).all()
    found = {link.run_id: link.workflow_id for link in links}
    return {run_id: found.get(run_id, run_id) for run_id in ids}


def workflow_runs(session: Session, workflow_id: str) -> list[Run]:
    """The runs of one workflow run, oldest first."""
    runs = list(
        session.exec(
            select(Run)
            .join(RunLink, col(RunLink.run_id) == col(Run.id))
            .where(RunLink.workflow_id == workflow_id)
            .order_by(col(Run.created_at), col(Run.attempt))
        ).all()
    )
    if not runs and session.get(RunLink, workflow_id) is None:
        # a run that was never linked is a workflow run of its own (a linked one with no
        # run linked to its id is a step of another workflow run, not one)
        alone = session.get(Run, workflow_id)
        runs = [alone] if alone is not None else []
    return runs


def _grow(session: Session, started: set[int]) -> tuple[set[int], list[TaskDependency]]:
    """The tasks downstream of `started`, and the predecessors each of those waits for."""
    tasks, frontier = set(started), set(started)
    while frontier and len(tasks) < MAX_STEPS:
        below = session.exec(
            select(TaskDependency.task_id).where(col(TaskDependency.predecessor_id).in_(frontier))
        ).all()
        frontier = set(below) - tasks
        tasks |= frontier
    edges = list(
        session.exec(select(TaskDependency).where(col(TaskDependency.task_id).in_(tasks))).all()
    )
    tasks |= {e.predecessor_id for e in edges}
    return tasks, edges


def workflow_graph(session: Session, workflow_id: str) -> WorkflowGraph | None:
    """The graph of one workflow run, or None when no run belongs to it."""
    runs = workflow_runs(session, workflow_id)
    if not runs:
        return None
    task_ids, edges = _grow(session, {r.task_id for r in runs})
    graph = WorkflowGraph(workflow_id)
    for task in session.exec(select(Task).where(col(Task.id).in_(task_ids))).all():
        graph.steps[task.id or 0] = Step(task.id or 0, task.name, task.site)
    for run in runs:  # oldest first: the last one seen is the step's latest
        step = graph.steps.get(run.task_id)
        if step is not None:
            step.state, step.run_id, step.runs = run.state, run.id, step.runs + 1
    graph.edges = sorted(
        (e.predecessor_id, e.task_id, e.on)
        for e in edges
        if e.predecessor_id in graph.steps and e.task_id in graph.steps
    )
    return graph
