"""A task's dependencies: the edges to its predecessors, checked, locked and stored.

A task that depends on others runs when they settle with the outcome each edge
needs (controller/workflow.py); these keep the edges sound as they are given: each
predecessor once, existing, not the task itself, no cycle, and one change of edges
at a time so two changes cannot close a cycle between them.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session, select

from tme.controller.services.launch import LOCK_TASK
from tme.controller.services.task_checks import field_error
from tme.controller.services.workflow_reach import check_reachable
from tme.controller.store.models import MAX_ID, Task, TaskDependency
from tme.errors import ValidationError
from tme.schemas import Dependency


def check_dependencies(session: Session, task_id: int | None, deps: list[Dependency]) -> None:
    """Refuse (422 naming each) a predecessor given twice, the task itself, one that does
    not exist, a cycle through the task (`task_id`, None for a new task) and a join a
    workflow run could never reach."""
    errors = []
    first_at: dict[int, int] = {}
    for index, dep in enumerate(deps):
        seen = first_at.setdefault(dep.task, index)
        if seen != index:  # one edge per pair of tasks: a second would break its key
            message = f"task {dep.task} is already at depends_on.{seen}: give each task once"
            errors.append(field_error(f"depends_on.{index}.task", message))
        elif dep.task == task_id:
            errors.append(field_error(f"depends_on.{index}.task", "a task cannot depend on itself"))
        elif dep.task > MAX_ID or session.get(Task, dep.task) is None:
            errors.append(
                field_error(f"depends_on.{index}.task", f"task {dep.task} does not exist")
            )
    if errors:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid dependencies: {problems}", field_errors=errors)
    if task_id is not None:
        cycle = _find_cycle(session, task_id, [d.task for d in deps])
        if cycle:
            path = " -> ".join(str(t) for t in cycle)
            raise ValidationError(
                f"dependency cycle: {path}",
                field_errors=[field_error("depends_on", f"dependency cycle: {path}")],
            )
    check_reachable(session, task_id, [d.task for d in deps])


# The PostgreSQL advisory lock one change of dependencies at a time holds ("tmed").
DEPENDENCY_LOCK = 0x746D6564


def lock_dependency_changes(session: Session, task_id: int) -> None:
    """Hold, until this transaction ends, the right to change dependencies, before the
    edges are read for cycles and joins: two changes at once (A on B, B on A) would each
    find none in the edges committed before them and both be stored, a cycle. The second
    now waits for the first to commit and reads its edge. On SQLite a locking read takes
    the write gate, which serializes the changes as well."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEPENDENCY_LOCK})
    else:
        session.execute(LOCK_TASK, {"id": task_id})


def _find_cycle(session: Session, start: int, first_hops: list[int]) -> list[int] | None:
    """Depth-first search from start's new predecessors back to start."""
    stack: list[tuple[int, list[int]]] = [(t, [start, t]) for t in first_hops]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        predecessors = session.exec(
            select(TaskDependency.predecessor_id).where(TaskDependency.task_id == node)
        ).all()
        stack.extend((p, [*path, p]) for p in predecessors)
    return None


def store_edges(session: Session, task: Task, deps: list[Dependency]) -> None:
    """Replace the task's edges with `deps` (checked)."""
    for old in session.exec(select(TaskDependency).where(TaskDependency.task_id == task.id)):
        session.delete(old)
    session.flush()
    for dep in deps:
        session.add(TaskDependency(task_id=task.id or 0, predecessor_id=dep.task, on=dep.on))
