"""Settling finished runs in a batch: a run whose settling only marks its link (an
outcome never retried, a task without dependents or held runs) is settled by one
statement for the batch, without loading it; the others are settled one by one."""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import settle_pending
from tme.schemas import TaskCreate
from tme.states import RunState


def _finished_runs(engine: Engine, count: int, state: RunState, **fields: object) -> list[str]:
    """`count` external tasks started at once, their runs moved to `state`."""
    items = [TaskCreate.model_validate({"name": f"report {i}", **fields}) for i in range(count)]
    with session_scope(engine) as session:
        made = create_tasks(session, items, on_run_ready=RunReady(Settings(), threading.Event()))
        run_ids = [str(task.latest_run_id) for task, _ in made]
    with session_scope(engine) as session:
        for run in session.exec(select(Run).where(col(Run.id).in_(run_ids))):
            transition(session, run, RunState.running)
            transition(session, run, state)
    return run_ids


def _settle_counting(engine: Engine) -> tuple[int, list[str]]:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        words = statement.split()
        verb = words[0].upper()
        table = words[words.index("FROM") + 1] if verb == "SELECT" else words[1]
        statements.append(f"{verb} {table}")

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope(engine) as session:
            settled = settle_pending(session, None)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return settled, statements


def _unsettled(engine: Engine, run_ids: list[str]) -> list[str]:
    with session_scope(engine) as session:
        query = select(RunLink.run_id).where(col(RunLink.run_id).in_(run_ids))
        return list(session.exec(query.where(col(RunLink.settled).is_(False))))


def test_plain_runs_settle_in_one_statement_however_many(engine: Engine) -> None:
    assert _settle_counting(engine)[0] == 0  # the workflow cursor exists from here on
    few = _finished_runs(engine, 3, RunState.succeeded)
    settled_few, statements_few = _settle_counting(engine)
    many = _finished_runs(engine, 30, RunState.succeeded)
    settled_many, statements_many = _settle_counting(engine)
    assert (settled_few, settled_many) == (3, 30)
    assert statements_few == statements_many
    assert statements_many.count("UPDATE run_links") == 1
    assert "SELECT tasks" not in statements_many  # no run or task loaded to settle it
    assert _unsettled(engine, few + many) == []
    assert _settle_counting(engine)[0] == 0  # settled once


def test_a_run_that_may_be_retried_is_settled_with_its_retry(engine: Engine) -> None:
    """A failed run of a task with retries goes the full way: its retry is planned."""
    plain = _finished_runs(engine, 2, RunState.succeeded)
    failed = _finished_runs(engine, 1, RunState.failed, retries={"max": 2})
    settled, statements = _settle_counting(engine)
    assert "SELECT tasks" in statements  # the failed run's task: its retry policy
    assert settled == 3 and _unsettled(engine, plain + failed) == []
    with session_scope(engine) as session:
        (task_id,) = session.exec(select(Run.task_id).where(Run.id == failed[0]))
        attempts = sorted(session.exec(select(Run.attempt).where(Run.task_id == task_id)))
    assert attempts == [1, 2]
