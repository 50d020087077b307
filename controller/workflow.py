"""The workflow engine: what happens after a run settles.

It reads final transitions from run_events (past a stored cursor) and, once per
run (the link's `settled` flag, claimed in the same transaction):
- plans an automatic retry (retries.decide_retry), which joins the same workflow run;
- starts, keeps waiting, or skips each dependent task in the same workflow run: a
  join waits for all its predecessors; a step whose condition can no longer hold
  is skipped with the reason, and that skip settles in turn; a step that may start
  obeys its task's pause and overlap policy as any other start (skipped, or held in
  the overlap queue);
- starts the next run waiting in the task's overlap queue, and the oldest waiting for
  one of the exclusive resources its task names (services/resources.py);
- starts the next runs of the rollout its task belongs to, or aborts or ends it
  (services/rollout_advance.py).
A periodic sweep (`settle_missed`) settles, by their unsettled links, the final runs
the cursor went by: on PostgreSQL a final hop may commit after later ones were read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, literal, or_, union_all, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from tme.controller.retries import RETRY_ON, plan_retry
from tme.controller.services.launch import Latest, hold, link_run, release_held, room_for
from tme.controller.services.resources import release_resources
from tme.controller.services.rollout_advance import advance_rollouts
from tme.controller.services.runs import (
    RunReadyHook,
    chunks,
    load_runs,
    start_run,
    transition,
)
from tme.controller.services.workflow_cancel import stopped
from tme.controller.services.workflow_reach import runs_in
from tme.controller.store.db import keep_loaded
from tme.controller.store.models import Run, RunEvent, Task, TaskDependency, TaskResource
from tme.controller.store.rollout_models import Rollout, RolloutDevice
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import RunLink, TaskPolicy, WorkflowCursor
from tme.states import FAILURE_STATES, FINAL_STATES, RunState

log = logging.getLogger("tme.workflow")

CURSOR = "workflow"
BATCH = 500
# Events are re-read this far behind the cursor: on PostgreSQL a lower id may commit
# after a higher one. Settling is idempotent, so a re-read costs one lookup.
LOOKBACK = 200
FINAL_VALUES = [s.value for s in FINAL_STATES]
LINKS, EVENTS, RUNS = table_of(RunLink), table_of(RunEvent), table_of(Run)
# Final hops past the cursor of runs not settled yet (a run without a link counts as
# unsettled), with what deciding how to settle them needs.
FINAL_HOPS = (
    core_select(
        EVENTS.c.id,
        EVENTS.c.run_id,
        EVENTS.c.from_state,
        EVENTS.c.to_state,
        RUNS.c.task_id,
        LINKS.c.run_id.label("linked"),
    )
    .join(RUNS, RUNS.c.id == EVENTS.c.run_id)
    .outerjoin(LINKS, LINKS.c.run_id == EVENTS.c.run_id)
    .where(
        EVENTS.c.id > bindparam("after"),
        EVENTS.c.to_state.in_(FINAL_VALUES),
        or_(LINKS.c.run_id.is_(None), LINKS.c.settled.is_(False)),
    )
    .order_by(EVENTS.c.id)
    .limit(bindparam("limit"))
)
DEPS, RESOURCES = table_of(TaskDependency), table_of(TaskResource)
ROLLOUTS, ROLLOUT_DEVICES = table_of(Rollout), table_of(RolloutDevice)
# Built once, like the statements above: which of some tasks have dependents, and
# which have runs held in their overlap queue, in one query. The held half reads the
# partial index of held links (migration 0009), the few runs queued now: `task_id + 0`
# keeps SQLite from starting at the runs of the tasks instead, for a busy task every
# run it ever had.
DEPENDENTS, HELD = 1, 2
TASKS_WITH_MORE = union_all(
    core_select(DEPS.c.predecessor_id, literal(DEPENDENTS))
    .where(DEPS.c.predecessor_id.in_(bindparam("ids", expanding=True)))
    .distinct(),
    core_select(RUNS.c.task_id, literal(HELD))
    .join(LINKS, LINKS.c.run_id == RUNS.c.id)
    .where((RUNS.c.task_id + 0).in_(bindparam("ids", expanding=True)), LINKS.c.held.is_(True))
    .distinct(),
    # A task naming resources may have runs of other tasks waiting for them.
    core_select(RESOURCES.c.task_id, literal(HELD))
    .where(RESOURCES.c.task_id.in_(bindparam("ids", expanding=True)))
    .distinct(),
    # A task of a rollout going: its settle may start the rollout's next run.
    core_select(ROLLOUT_DEVICES.c.task_id, literal(HELD))
    .join(ROLLOUTS, ROLLOUTS.c.id == ROLLOUT_DEVICES.c.rollout_id)
    .where(
        ROLLOUT_DEVICES.c.task_id.in_(bindparam("ids", expanding=True)),
        ROLLOUTS.c.state == "going",
    )
    .distinct(),
)
# Final runs whose link is still unsettled though no final hop of theirs lies past the
# cursor: the cursor went by without settling them (on PostgreSQL a final hop may
# commit after later ones were read, more than LOOKBACK ids behind them). Read through
# the partial index of unsettled links, so its cost follows the runs in flight, not
# every run ever kept.
PAST_THE_CURSOR = (
    core_select(
        LINKS.c.run_id,
        RUNS.c.task_id,
        RUNS.c.state.label("to_state"),
        LINKS.c.run_id.label("linked"),
    )
    .join(RUNS, RUNS.c.id == LINKS.c.run_id)
    .where(
        LINKS.c.settled.is_(False),
        # `|| ''` keeps SQLite from reading runs by their state index: nearly every run
        # kept is final, so the plan must start from the few unsettled links instead.
        RUNS.c.state.concat("").in_(FINAL_VALUES),
        ~core_select(EVENTS.c.id)
        .where(
            EVENTS.c.run_id == LINKS.c.run_id,
            EVENTS.c.id > bindparam("cursor"),
            EVENTS.c.to_state.in_(FINAL_VALUES),
        )
        .exists(),
    )
    .limit(bindparam("limit"))
)
MARK_SETTLED = (
    update(LINKS)
    .where(LINKS.c.run_id.in_(bindparam("ids", expanding=True)), LINKS.c.settled.is_(False))
    .values(settled=True)
)


def settle_pending(session: Session, hook: RunReadyHook | None) -> int:
    """Settle runs whose final transition is past the cursor; return how many settled.

    Only runs not settled yet are read (a run without a link counts as unsettled),
    so re-reading LOOKBACK events behind the cursor costs one query, not a lookup each.
    """
    cursor = session.get(WorkflowCursor, CURSOR) or WorkflowCursor(name=CURSOR)
    last = session.exec(
        select(func.max(RunEvent.id)).where(
            col(RunEvent.id) > cursor.last_event_id,
            col(RunEvent.to_state).in_(FINAL_VALUES),
        )
    ).one()
    rows = session.execute(
        FINAL_HOPS,
        {"after": cursor.last_event_id - LOOKBACK, "limit": BATCH + LOOKBACK},
    ).all()
    settling = [r for r in rows if r.from_state is None or not RunState(r.from_state).is_final]
    settled = _settle_rows(session, settling, hook)  # in the order the runs settled
    for row in rows:
        cursor.last_event_id = max(cursor.last_event_id, row.id or 0)
    if len(rows) < BATCH + LOOKBACK and last is not None:
        cursor.last_event_id = max(cursor.last_event_id, last)  # all between were settled
    session.add(cursor)
    return settled


def settle_missed(session: Session, hook: RunReadyHook | None) -> int:
    """Settle final runs the cursor went by without settling; return how many settled.

    The backstop of `settle_pending`, which trusts id order: on PostgreSQL ids are
    taken at insert but seen at commit, so a final hop that commits late, more than
    LOOKBACK ids below one already read, is never read. This finds such runs by their
    unsettled links instead, leaves the ones whose final hop is still ahead of the
    cursor to `settle_pending`, and does not move the cursor. At most BATCH a call.
    """
    cursor = session.get(WorkflowCursor, CURSOR)
    if cursor is None:
        return 0  # the cursor pass has not run: every final hop is still ahead of it
    rows = session.execute(PAST_THE_CURSOR, {"cursor": cursor.last_event_id, "limit": BATCH}).all()
    if rows:
        log.warning("settling %d finished runs the workflow cursor went by", len(rows))
    return _settle_rows(session, list(rows), hook)


def _settle_rows(session: Session, rows: list[Any], hook: RunReadyHook | None) -> int:
    """Settle the runs of FINAL_HOPS-shaped rows, in their order; return how many settled.
    Plain runs are settled in one statement per chunk, the others one by one."""
    plain, predecessors, holding = _plain_among(session, rows)
    settled = _mark_settled(session, plain)
    runs = load_runs(session, {r.run_id for r in rows} - plain)
    _load_links(session, list(runs))
    for row in rows:
        run = runs.get(row.run_id)
        if run is not None and settle_run(session, run, hook, predecessors, holding):
            settled += 1
    return settled


class Finished(NamedTuple):
    """A run that has just reached a final state, as settling it needs to see it."""

    run_id: str
    task_id: int
    to_state: str
    linked: str | None  # its link's run id; None: the run has no link yet


def settle_finished(session: Session, finished: Iterable[Finished]) -> int:
    """Settle, in the transaction that made them final, the runs whose settling only marks
    their link (see `_only_settles`); return how many are left for `settle_pending`."""
    finished = list(finished)
    candidates = [f for f in finished if RunState(f.to_state) not in RETRY_ON]
    plain = _plain_among(session, candidates)[0] if candidates else set()
    return len(finished) - _mark_settled(session, plain)


def _plain_among(session: Session, rows: list[Any]) -> tuple[set[str], set[int], set[int]]:
    """The runs among `rows` whose settling only marks their link, with the rows' tasks
    that have dependents and those with runs held in their overlap queue."""
    predecessors, holding = _tasks_with_more(session, {r.task_id for r in rows})
    plain = {r.run_id for r in rows if _only_settles(r, predecessors, holding)}
    return plain, predecessors, holding


def _only_settles(row: Any, predecessors: set[int], holding: set[int]) -> bool:
    """Whether settling this run only marks its link settled: it has a link, its outcome
    is never retried, its task has no dependents and no runs held in its queue (what
    `settle_run` would find, without loading the run and its task)."""
    return (
        row.linked is not None
        and RunState(row.to_state) not in RETRY_ON
        and row.task_id not in predecessors
        and row.task_id not in holding
    )


def _mark_settled(session: Session, run_ids: set[str]) -> int:
    """Settle links in one statement per chunk; return how many were still unsettled."""
    count = 0
    for chunk in chunks(sorted(run_ids)):
        result = session.execute(MARK_SETTLED, {"ids": chunk})
        count += result.rowcount  # type: ignore[attr-defined]
    return count


def _load_links(session: Session, run_ids: list[str]) -> None:
    """Bring the runs' links into the session, so settling them looks none up."""
    for chunk in chunks(run_ids):
        keep_loaded(session, session.exec(select(RunLink).where(col(RunLink.run_id).in_(chunk))))


def _tasks_with_more(session: Session, task_ids: set[int]) -> tuple[set[int], set[int]]:
    """Which of these tasks have dependents (the others have no step to advance), and
    which have runs waiting in their overlap queue (the others have none to release).
    A step held while settling waits behind an active run of its task: not one of the
    batch (their runs are final), and that run releases it when it settles; so what this
    finds stays true for the batch."""
    found: dict[int, set[int]] = {DEPENDENTS: set(), HELD: set()}
    for chunk in chunks(sorted(task_ids)):
        for task_id, why in session.execute(TASKS_WITH_MORE, {"ids": chunk}):
            found[why].add(task_id)
    return found[DEPENDENTS], found[HELD]


def ensure_link(session: Session, run: Run) -> RunLink:
    link = session.get(RunLink, run.id)
    return link if link is not None else link_run(session, run, cause="manual")


def settle_run(
    session: Session,
    run: Run,
    hook: RunReadyHook | None,
    predecessors: set[int] | None = None,
    holding: set[int] | None = None,
) -> bool:
    """Settle one final run once. `predecessors` and `holding`, from a batch, name the
    tasks that have dependents and those with runs held in their overlap queue; without
    them both are looked up."""
    link = ensure_link(session, run)
    if link.settled or not RunState(run.state).is_final:
        return False
    if not _claim(session, link):
        return False
    task = session.get(Task, run.task_id)
    if task is None:
        return True
    # a workflow run canceled as a whole retries none of its runs
    halted = stopped(session, link.workflow_id, lock=True) if run.state in RETRY_ON else None
    plan_retry(session, task, run, link, halted)
    if predecessors is None or task.id in predecessors:
        advance_dependents(session, task.id or 0, link.workflow_id, hook)
    if holding is None or task.id in holding:
        release_held(session, task, hook)
        release_resources(session, task.resources or [], hook)
        advance_rollouts(session, task.id or 0, hook)  # services/rollout_advance.py
    return True


def _claim(session: Session, link: RunLink) -> bool:
    """Mark the link settled unless another transaction did: the conditional UPDATE
    waits for one settling the same run (another controller that still believes it
    leads) and then finds it settled, so its dependents and retry start once."""
    session.flush()  # a link made just now must be in the table to be claimed
    result = session.execute(MARK_SETTLED, {"ids": [link.run_id]})
    link.settled = True  # as the row now says (or another transaction made it)
    session.add(link)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def latest_in(session: Session, task_id: int, workflow_id: str) -> Run | None:
    return session.exec(
        select(Run)
        .join(RunLink, col(RunLink.run_id) == col(Run.id))
        .where(Run.task_id == task_id, RunLink.workflow_id == workflow_id)
        .order_by(col(Run.created_at).desc(), col(Run.attempt).desc())
    ).first()


def condition_holds(on: str, state: RunState) -> bool:
    if on == "success":
        return state == RunState.succeeded
    if on == "failure":
        return state in FAILURE_STATES
    return state.is_final  # any: the predecessor completed, whatever its outcome


def advance_dependents(
    session: Session, task_id: int, workflow_id: str, hook: RunReadyHook | None
) -> None:
    dependents = session.exec(
        select(TaskDependency.task_id).where(TaskDependency.predecessor_id == task_id)
    ).all()
    for dependent in sorted(set(dependents)):
        decide_step(session, dependent, workflow_id, hook)


def decide_step(
    session: Session, task_id: int, workflow_id: str, hook: RunReadyHook | None
) -> None:
    """Start, keep waiting or skip one dependent task in this workflow run."""
    task = session.get(Task, task_id)
    if task is None:
        return
    waiting_for, blockers = [], []
    for edge in session.exec(select(TaskDependency).where(TaskDependency.task_id == task_id)):
        before = latest_in(session, edge.predecessor_id, workflow_id)
        never = before is None and _never_runs_in(session, edge.predecessor_id, workflow_id)
        if never:
            blockers.append(never)
        elif before is None or not RunState(before.state).is_final:
            waiting_for.append(str(edge.predecessor_id))
        elif not condition_holds(edge.on, RunState(before.state)):
            blockers.append(f"task {edge.predecessor_id} {before.state}, needs {edge.on}")
    existing = latest_in(session, task_id, workflow_id)
    if existing is not None and RunState(existing.state).is_final:
        if existing.state != RunState.skipped or blockers or waiting_for:
            return  # it ran (or stays skipped) in this workflow run
        existing = None  # skipped earlier; a retried predecessor now lets it run
    elif existing is not None and not _undecided(session, existing):
        return  # already started in this workflow run, or waiting to (a retry, the queue)
    if waiting_for and not blockers:
        return  # a join waits for all its predecessors in this workflow run
    # Canceled as a whole: skipped whatever its `on` (read locked before a start).
    halted = stopped(session, workflow_id, lock=not blockers)
    if blockers or halted:
        run = existing or _new_step(session, task, workflow_id)
        why = halted or "condition cannot hold: " + "; ".join(blockers)
        transition(session, run, RunState.skipped, reason=why)
        return
    _start_step(session, task, workflow_id, existing, hook)


def decide_after_new_dependencies(
    session: Session, task_id: int, before: Iterable[int], hook: RunReadyHook | None
) -> None:
    """Decide the task's step again, with its dependencies as changed, in each workflow
    run still going (one with a run not settled yet) that had reached it: one of its
    dependencies `before` the change has a run there, and it has none yet (it waited).

    A join's outcome is decided when a dependency of it settles: one that waited for a
    dependency now removed from it had its other dependencies settled before, and the
    removed one's outcome no longer concerns it, so without this it never started in
    that workflow run. A workflow run that is over stays as it ended, and one that had
    not reached the task is left to its new dependencies' outcomes."""
    wanted = sorted(set(before))
    if not wanted:
        return
    going = session.exec(
        select(RunLink.workflow_id).where(col(RunLink.settled).is_(False)).distinct()
    ).all()
    reached: set[str] = set()
    for chunk in chunks(sorted(set(going))):
        reached.update(
            session.exec(
                select(RunLink.workflow_id)
                .join(Run, col(Run.id) == col(RunLink.run_id))
                .where(col(RunLink.workflow_id).in_(chunk), col(Run.task_id).in_(wanted))
                .distinct()
            ).all()
        )
    for workflow_id in sorted(reached):
        if latest_in(session, task_id, workflow_id) is None:
            decide_step(session, task_id, workflow_id, hook)


def _undecided(session: Session, run: Run) -> bool:
    """Whether a step's active run was left to decide: a waiting run that is neither a
    planned retry nor held in the overlap queue (a placeholder of an older version)."""
    if run.state != RunState.waiting:
        return False
    link = session.get(RunLink, run.id)
    return link is None or (not link.held and link.retry_at is None)


def _start_step(
    session: Session, task: Task, workflow_id: str, existing: Run | None, hook: RunReadyHook | None
) -> None:
    """Start a dependent whose dependencies settled, as its task's pause and overlap
    policy allow (launch.Room, read with the task's launches locked, as for a schedule
    or a trigger): refused, the step is skipped with why (its dependents follow the
    skip), and the task's latest run stays as it was; queued, it waits in the overlap
    queue for the run before it."""
    room = room_for(session, task, besides=existing.id if existing else None)
    latest = Latest.of(task)
    run = existing or _new_step(session, task, workflow_id)
    refusal = room.refusal("dependency")
    if refusal is not None:
        transition(session, run, RunState.skipped, reason=f"{run.reason}: {refusal}")
        if existing is None:
            latest.restore(session, task)
        return
    busy = room.queues
    if busy is not None:
        link = session.get(RunLink, run.id)
        assert link is not None  # linked by _new_step, or found linked by latest_in
        hold(session, run, link, busy)
    elif hook is not None:
        hook(session, run, task)


def _never_runs_in(session: Session, task_id: int, workflow_id: str) -> str:
    """Why `task_id` can never run in this workflow run, or "" when it still may: only the
    tasks downstream of the task that started it do (workflow_reach). A join of tasks
    started on their own, stored before create checked for it, or a workflow run started
    half-way by "run now", would otherwise wait for ever with nothing to say so."""
    root = session.exec(select(Run.task_id).where(Run.id == workflow_id)).first()
    if root is None or runs_in(session, task_id, root):
        return ""  # that first run is no longer kept: keep waiting, as before
    return (
        f"task {task_id} never runs in this workflow run (started by task {root}): a join "
        "runs only when all its dependencies run in one workflow run"
    )


def _new_step(session: Session, task: Task, workflow_id: str) -> Run:
    run = start_run(
        session,
        task,
        reason=f"workflow {workflow_id}: dependencies settled",
        source="controller",
    )
    policy = session.get(TaskPolicy, task.id)
    deadline_s = policy.deadline_s if policy else None  # the step's own total deadline
    link_run(session, run, cause="dependency", workflow_id=workflow_id, deadline_s=deadline_s)
    session.flush()
    return run
