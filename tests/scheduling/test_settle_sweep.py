"""The scheduling loop's sweep of final runs the workflow cursor went by: on the
housekeeping passes, at most every `sweep_s`, and cheap however many runs are kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from moved_runs import runs_moved
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from tme.config import Settings
from tme.controller import scheduling
from tme.controller.scheduling import Scheduling
from tme.controller.services.runs import transition
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent, Task
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import LOOKBACK, settle_missed, settle_pending
from tme.schemas import TaskCreate
from tme.states import RunState


def _running(engine: Engine, *names: str) -> list[str]:
    items = [TaskCreate.model_validate({"name": name}) for name in names]
    return runs_moved(engine, items, RunState.running)


def _succeed(engine: Engine, run_id: str, event_id: int) -> None:
    """The run succeeds in one transaction, its final hop keeping `event_id`."""
    with session_scope(engine) as session:
        transition(session, session.get_one(Run, run_id), RunState.succeeded)
        session.flush()
        hop = col(RunEvent.run_id) == run_id, col(RunEvent.to_state) == "succeeded"
        session.execute(update(RunEvent).where(*hop).values(id=event_id))


def _finished_behind_the_cursor(engine: Engine) -> str:
    """A run whose final hop committed after the cursor pass had read one LOOKBACK + 100
    ids above it; the cursor pass never settles it."""
    late, later = _running(engine, "late", "later")
    with session_scope(engine) as session:
        settle_pending(session, None)
        taken = int(session.exec(select(func.max(RunEvent.id))).one() or 0) + 1
    _succeed(engine, later, taken + LOOKBACK + 100)
    with session_scope(engine) as session:
        settle_pending(session, None)
    _succeed(engine, late, taken)
    with session_scope(engine) as session:
        assert settle_pending(session, None) == 0
    return late


def _settled(engine: Engine, run_id: str) -> bool:
    with session_scope(engine) as session:
        return session.get_one(RunLink, run_id).settled


def test_the_sweep_runs_on_housekeeping_passes_at_most_every_sweep_s(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(scheduling, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    loop = Scheduling(engine, None, Settings(), sweep_s=30)
    first = _finished_behind_the_cursor(engine)
    loop.step(housekeeping=False)
    assert not _settled(engine, first)  # a wake settles workflows, it does not sweep
    loop.step()
    assert _settled(engine, first)  # the first housekeeping pass sweeps
    second = _finished_behind_the_cursor(engine)
    clock[0] += 29
    loop.step()
    assert not _settled(engine, second)
    clock[0] += 1
    loop.step()
    assert _settled(engine, second)


def test_the_sweep_reads_the_unsettled_links_not_every_run(engine: Engine) -> None:
    """Every run ever kept is final, and nearly all are settled: the sweep's query must
    start from the partial index of unsettled links (SQLite plans)."""
    _running(engine, "in flight")
    _finished_behind_the_cursor(engine)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_scope(engine) as session:
            assert settle_missed(session, None) == 1
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    (statement, params), *_ = [s for s in statements if "FROM run_links JOIN runs" in s[0]]
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    steps = [str(row[-1]) for row in plan]
    assert steps[0] == "SCAN run_links USING INDEX ix_run_links_unsettled", steps
    scans = [s for s in steps[1:] if s.startswith("SCAN")]
    assert scans == [], f"the sweep reads a whole table: {scans}"


def test_a_run_a_status_report_started_is_found_by_the_sweep(engine: Engine) -> None:
    """A run that a person's `started` report creates is linked at once, as any other
    start is: the sweep finds unsettled runs by their links, and one without a link
    whose final hop the cursor went by would never be settled (its waiters would wait
    for ever)."""
    from tme.controller.services.status_report import report_status
    from tme.controller.services.tasks import create_task
    from tme.schemas import TaskUpdate

    with session_scope(engine) as session:
        task, _ = create_task(session, TaskCreate(name="by hand", trigger="shift"))
        task_id = task.id
    with session_scope(engine) as session:
        task = session.get_one(Task, task_id)
        report_status(session, task, TaskUpdate(status="started"))
        run_id = task.latest_run_id
    assert run_id is not None
    (other,) = _running(engine, "other")
    with session_scope(engine) as session:
        settle_pending(session, None)
        taken = int(session.exec(select(func.max(RunEvent.id))).one() or 0) + 1
    _succeed(engine, other, taken + LOOKBACK + 100)
    with session_scope(engine) as session:
        settle_pending(session, None)  # the cursor goes past where the report's hop lands
    _succeed(engine, run_id, taken)
    with session_scope(engine) as session:
        assert settle_pending(session, None) == 0
        assert settle_missed(session, None) == 1
    assert _settled(engine, run_id)
