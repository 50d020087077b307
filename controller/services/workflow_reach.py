"""Which workflow runs a task can run in, and the joins that never could.

A workflow run starts with one run of one task, its root (a schedule or trigger
firing, "run now", a status report, or a task created to run at once), and reaches
only the tasks downstream of it: a dependent starts in a workflow run once each of
its dependencies has a final run in that same workflow run. So a task runs in the
workflow runs rooted at task R when it is R, or when it has dependencies and each of
them runs in R's workflow runs. Its roots are the tasks whose workflow runs it can run
in: itself, and the roots its dependencies all share.

A join whose dependencies share no root (A and B each fired on their own) would wait
for ever in every workflow run; `check_reachable` refuses such a dependency graph when
a task is created or its dependencies change, and `runs_in` lets the engine skip, with
the reason, a step a workflow run can never complete (graphs stored before the check,
or a workflow run started half-way by "run now").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from sqlmodel import Session, col, select

from tme.controller.services.runs import chunks
from tme.controller.store.models import TaskDependency
from tme.errors import ValidationError

Edges = Mapping[int, Sequence[int]]  # task -> its dependencies (predecessors)
NEW = 0  # the id a task being created stands under in the graph (ids start at 1)


def upstream(session: Session, task_ids: Iterable[int], known: Edges | None = None) -> Edges:
    """The dependencies of `task_ids` and of every task above them, one query a level;
    `known` gives tasks whose dependencies are taken as given (a change not stored yet)."""
    edges: dict[int, list[int]] = {k: list(v) for k, v in (known or {}).items()}
    frontier = {p for v in edges.values() for p in v} | set(task_ids)
    frontier -= set(edges)
    while frontier:
        found: dict[int, list[int]] = defaultdict(list)
        for chunk in chunks(sorted(frontier)):
            query = select(TaskDependency.task_id, TaskDependency.predecessor_id)
            for task_id, predecessor in session.exec(
                query.where(col(TaskDependency.task_id).in_(chunk))
            ):
                found[task_id].append(predecessor)
        for task_id in frontier:
            edges[task_id] = sorted(found.get(task_id, []))
        frontier = {p for task_id in frontier for p in edges[task_id]} - set(edges)
    return edges


def downstream(session: Session, task_id: int) -> set[int]:
    """Every task that depends on `task_id`, directly or through others."""
    below: set[int] = set()
    frontier = {task_id}
    while frontier:
        found: set[int] = set()
        for chunk in chunks(sorted(frontier)):
            query = select(TaskDependency.task_id)
            found |= set(session.exec(query.where(col(TaskDependency.predecessor_id).in_(chunk))))
        frontier = found - below - {task_id}
        below |= frontier
    return below


def roots(edges: Edges, task_id: int, memo: dict[int, frozenset[int]]) -> frozenset[int]:
    """The tasks whose workflow runs `task_id` can run in (see the module docstring).
    Iterative, so a long chain cannot exhaust the stack. The graph has no cycles, but a
    database may hold one stored before changes of dependencies were serialized: a
    predecessor met again on the way (`visiting`) adds nothing, so the walk ends."""
    stack, visiting = [task_id], set()
    while stack:
        node = stack[-1]
        if node in memo:
            stack.pop()
            continue
        if node not in visiting:
            visiting.add(node)
            pending = [p for p in edges.get(node, ()) if p not in memo and p not in visiting]
            if pending:
                stack.extend(pending)
                continue
        stack.pop()
        visiting.discard(node)
        preds = edges.get(node, ())
        memo[node] = frozenset({node}) | _shared(memo.get(p, frozenset()) for p in preds)
    return memo[task_id]


def _shared(sets: Iterable[frozenset[int]]) -> frozenset[int]:
    common: frozenset[int] | None = None
    for found in sets:
        common = found if common is None else common & found
    return common or frozenset()


def runs_in(session: Session, task_id: int, root_id: int) -> bool:
    """Whether `task_id` can still run in a workflow run rooted at task `root_id`."""
    return root_id in roots(upstream(session, [task_id]), task_id, {})


def check_reachable(session: Session, task_id: int | None, deps: Sequence[int]) -> None:
    """Refuse (422) dependencies that would leave a join unable to ever run: the task's
    own (`task_id` None: a task being created), or, when an existing task's dependencies
    change, those of any task downstream of it."""
    below = downstream(session, task_id) if task_id is not None else set()
    me = NEW if task_id is None else task_id
    edges = upstream(session, below, known={me: sorted(set(deps))})
    memo: dict[int, frozenset[int]] = {}
    for task in [me, *sorted(below)]:
        preds = edges.get(task, ())
        if preds and roots(edges, task, memo) == {task}:
            raise _unreachable(task, me, preds, memo)


def _unreachable(
    task: int, changed: int, preds: Sequence[int], memo: dict[int, frozenset[int]]
) -> ValidationError:
    apart = _apart(preds, memo)
    named = " and ".join(f"task {p}" for p in apart)
    both = "both" if len(apart) == 2 else "them all"
    who = "the new task" if task == NEW else f"task {task}"
    why = (
        f"{who} would never start as a dependent: it needs {named} to finish in the same "
        f"workflow run, and no workflow run reaches {both} (a workflow run reaches only the "
        "task that started it and the tasks downstream of that task)"
    )
    if task != changed:
        why = f"this change to task {changed}'s dependencies would mean {why}"
    fix = (
        f"make task {apart[1]} depend on task {apart[0]}, or both depend on one task"
        if len(apart) == 2
        else "make them depend on one another, or all on one task"
    )
    message = f"{why}; {fix}"
    return ValidationError(
        f"unreachable join: {message}",
        field_errors=[{"field": "depends_on", "message": message, "type": "value_error"}],
    )


def _apart(preds: Sequence[int], memo: dict[int, frozenset[int]]) -> list[int]:
    """Two dependencies that share no root when there are such, else all of them."""
    for i, first in enumerate(preds):
        for second in preds[i + 1 :]:
            if not memo[first] & memo[second]:
                return [first, second]
    return list(preds)
