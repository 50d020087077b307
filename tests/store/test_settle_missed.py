"""The sweep behind the workflow cursor: a final hop that commits late (on PostgreSQL
an id is taken at insert but seen at commit) may carry an id more than LOOKBACK below
one the cursor pass has already read; the cursor pass never reads it, the sweep finds
its run by its unsettled link and settles it, without moving the cursor.

The late commit is reproduced by the ids it leaves: the final hop of a run that
finished later is given an id LOOKBACK + 100 above the one the late hop keeps."""

from __future__ import annotations

import threading

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent
from tme.controller.store.workflow_models import RunLink, WorkflowCursor
from tme.controller.workflow import CURSOR, LOOKBACK, settle_missed, settle_pending
from tme.schemas import TaskCreate
from tme.states import RunState


def _running(engine: Engine, *names: str, **fields: object) -> list[tuple[int, str]]:
    """External tasks started at once, their runs running: (task id, run id) each."""
    items = [TaskCreate.model_validate({"name": name, **fields}) for name in names]
    with session_scope(engine) as session:
        made = create_tasks(session, items, on_run_ready=RunReady(Settings(), threading.Event()))
        started = [(task.id or 0, str(task.latest_run_id)) for task, _ in made]
    with session_scope(engine) as session:
        for run in session.exec(select(Run).where(col(Run.id).in_([r for _, r in started]))):
            transition(session, run, RunState.running)
    return started


def _dependent(engine: Engine, predecessor: int) -> int:
    item = {"name": "flush", "depends_on": [{"task": predecessor, "on": "success"}]}
    with session_scope(engine) as session:
        ((task, _),) = create_tasks(session, [TaskCreate.model_validate(item)], on_run_ready=None)
        return task.id or 0


def _last_event_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.max(RunEvent.id))).one() or 0)


def _finish(engine: Engine, run_id: str, state: RunState, event_id: int) -> None:
    """Move the run to `state` in one transaction, its final hop keeping `event_id`."""
    with session_scope(engine) as session:
        run = session.get_one(Run, run_id)
        transition(session, run, state)
        session.flush()
        hop = col(RunEvent.run_id) == run_id, col(RunEvent.to_state) == state.value
        session.execute(update(RunEvent).where(*hop).values(id=event_id))


def _settle(engine: Engine, settle: object) -> int:
    with session_scope(engine) as session:
        return int(settle(session, None))  # type: ignore[operator]


def _cursor(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.get_one(WorkflowCursor, CURSOR).last_event_id


def _settled(engine: Engine, run_id: str) -> bool:
    with session_scope(engine) as session:
        return session.get_one(RunLink, run_id).settled


def _runs_of(engine: Engine, task_id: int) -> list[tuple[str, str]]:
    """(state, workflow id) of each run of the task."""
    with session_scope(engine) as session:
        query = select(Run.state, RunLink.workflow_id).join(
            RunLink, col(RunLink.run_id) == col(Run.id)
        )
        return [tuple(row) for row in session.exec(query.where(Run.task_id == task_id))]


def _late_hop(engine: Engine, late: str, state: RunState, later: str) -> int:
    """Finish `later` with an id past LOOKBACK ahead, let the cursor pass read it, then
    commit `late`'s final hop with the lower id it took first; return that id."""
    assert _settle(engine, settle_pending) == 0  # the cursor exists from here on
    taken = _last_event_id(engine) + 1  # the late hop's id, taken at its insert
    _finish(engine, later, RunState.succeeded, taken + LOOKBACK + 100)
    assert _settle(engine, settle_pending) == 1
    _finish(engine, late, state, taken)  # commits now, far behind the cursor
    return taken


def test_a_final_hop_committed_behind_the_cursor_is_settled_by_the_sweep(
    engine: Engine,
) -> None:
    ((batch, a), (_, other)) = _running(engine, "batch", "other")
    flush = _dependent(engine, batch)
    _late_hop(engine, a, RunState.succeeded, other)
    cursor = _cursor(engine)
    assert _settle(engine, settle_pending) == 0  # the cursor pass never reads it
    assert not _settled(engine, a) and _runs_of(engine, flush) == []

    assert _settle(engine, settle_missed) == 1
    assert _settled(engine, a)
    (workflow,) = {w for _, w in _runs_of(engine, batch)}
    assert _runs_of(engine, flush) == [(RunState.pending.value, workflow)]  # the flush starts
    assert _cursor(engine) == cursor  # the sweep does not move the cursor


def test_a_late_failure_plans_its_retry(engine: Engine) -> None:
    ((task, a),) = _running(engine, "batch", retries={"max": 2})
    ((_, other),) = _running(engine, "other")
    _late_hop(engine, a, RunState.failed, other)
    assert _settle(engine, settle_missed) == 1
    with session_scope(engine) as session:
        attempts = sorted(session.exec(select(Run.attempt).where(Run.task_id == task)))
    assert attempts == [1, 2]


def test_the_sweep_leaves_runs_in_flight_alone_and_settles_each_run_once(
    engine: Engine,
) -> None:
    ((batch, a), (_, other), (_, busy)) = _running(engine, "batch", "other", "busy")
    flush = _dependent(engine, batch)
    _late_hop(engine, a, RunState.succeeded, other)
    assert _settle(engine, settle_missed) == 1
    assert _settle(engine, settle_missed) == 0  # once: the second sweep changes nothing
    assert len(_runs_of(engine, flush)) == 1
    assert not _settled(engine, busy)
    with session_scope(engine) as session:
        assert session.get_one(Run, busy).state == RunState.running.value


def test_a_final_hop_ahead_of_the_cursor_is_left_to_the_cursor_pass(engine: Engine) -> None:
    """The sweep takes only what the cursor went by; what lies ahead is settled in order
    by the cursor pass."""
    ((_, a),) = _running(engine, "batch", retries={"max": 2})
    assert _settle(engine, settle_pending) == 0
    _finish(engine, a, RunState.failed, _last_event_id(engine) + 1)
    assert _settle(engine, settle_missed) == 0
    assert not _settled(engine, a)
    assert _settle(engine, settle_pending) == 1
