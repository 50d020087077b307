"""A final state stays final when the writer that decided another hop read the run
before the final state was committed: the dispatcher recording a confirm, the
watchdog timing a run out and an operator's cancel each read the runs they move so
that an answer being committed waits for them, and then applies to what they wrote.
On PostgreSQL the reads lock the rows; on SQLite they take the write gate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from moved_runs import run_state
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from waiting import wait_until

from tme.controller.event_apply import apply_messages
from tme.controller.outbox import queue_run
from tme.controller.services import tasks as service
from tme.controller.services.cancel import cancel_run
from tme.controller.services.hop_batch import HopBatch
from tme.controller.services.runs import Hop
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent, utcnow
from tme.controller.store.sqlite_gate import gate_of
from tme.controller.watchdog import check_timeouts
from tme.protocol import Event
from tme.schemas import TaskCreate
from tme.states import RunState

AT = {"site": "s1", "agent": "a1", "device": "pump1"}  # where the tests' events come from


def _run_at_agent(engine: Engine, state: str = "accepted") -> str:
    """A run the agent has accepted (and started, with `running`)."""
    with session_scope(engine) as session:
        data = TaskCreate.model_validate(
            {"name": "pump 2 speed", "op": "noop", "target": AT, "timeout_s": 1}
        )
        task, _ = service.create_task(session, data)
        assert task.latest_run_id is not None
        run_id = task.latest_run_id
    kinds = ["accepted"] + (["started"] if state == "running" else [])
    with session_scope(engine) as session:
        apply_messages(session, [_event(run_id, kind) for kind in kinds])
    return run_id


def _queued_run(engine: Engine) -> str:
    """A run queued for its agent, its command in the outbox (not confirmed yet)."""
    data = TaskCreate.model_validate({"name": "pump 2 speed", "op": "noop", "target": AT})
    with session_scope(engine) as session:
        task, _ = service.create_task(
            session, data, on_run_ready=lambda s, r, t: queue_run(s, r, t, 30, 60)
        )
        assert task.latest_run_id is not None
        return task.latest_run_id


def _event(run_id: str, kind: str) -> Event:
    return Event(command_id=run_id, type=kind, site="s1", agent="a1")  # type: ignore[arg-type]


def _blocked(engine: Engine) -> bool:
    """Whether another writer waits for this database's lock (the gate, or a row lock)."""
    gate = gate_of(engine)
    if gate is not None:
        return gate.waiting > 0
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


@contextmanager
def _answered_after(engine: Engine, read: str, run_id: str, kind: str) -> Iterator[None]:
    """Within the block, right after this thread's first statement containing `read`
    (the read that decides a hop), another thread commits the agent's `kind` event:
    it goes through when that read locked nothing, or waits for this transaction."""
    me, done, answers = threading.get_ident(), threading.Event(), []

    def answer() -> None:
        with session_scope(engine) as other:
            apply_messages(other, [_event(run_id, kind)])
        done.set()

    def after_read(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if threading.get_ident() != me or answers or read not in " ".join(statement.split()):
            return
        answers.append(threading.Thread(target=answer, daemon=True))
        answers[0].start()
        wait_until(lambda: done.is_set() or _blocked(engine), what="the answer to land or wait")

    event.listen(engine, "after_cursor_execute", after_read)
    try:
        yield
    finally:
        event.remove(engine, "after_cursor_execute", after_read)
    assert answers, f"no statement read {read!r}"
    answers[0].join(timeout=30)
    assert done.is_set()


def _final_hops(engine: Engine, run_id: str) -> list[tuple[str | None, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(RunEvent.from_state, RunEvent.to_state)
            .where(RunEvent.run_id == run_id)
            .order_by(col(RunEvent.id))
        ).all()
    return [(f, t) for f, t in rows if RunState(t).is_final]


def test_a_confirm_recorded_after_the_result_does_not_undo_it(engine: Engine) -> None:
    run_id = _queued_run(engine)
    with (
        _answered_after(engine, "= runs.task_id WHERE runs.id IN", run_id, "succeeded"),
        session_scope(engine) as session,
    ):
        batch = HopBatch(session, [run_id])  # the dispatcher reads the run: queued
        batch.record(run_id, Hop(RunState.dispatched, "confirmed by broker", "controller"))
        batch.write()
    assert run_state(engine, run_id) == "succeeded"
    assert [to for _from, to in _final_hops(engine, run_id)] == ["succeeded"]


def test_a_watchdog_timeout_and_a_result_settle_on_one_final_state(engine: Engine) -> None:
    run_id = _run_at_agent(engine, "running")
    later = utcnow() + timedelta(seconds=60)
    with (
        _answered_after(engine, "FROM runs JOIN tasks", run_id, "succeeded"),
        session_scope(engine) as session,
    ):
        assert check_timeouts(session, later, default_timeout_s=1, grace_s=0) == 1
    # The result waited for the timeout's commit: kept as a late result beside it.
    assert run_state(engine, run_id) == "timed_out"
    finals = _final_hops(engine, run_id)
    assert finals[0] == ("running", "timed_out")
    assert all(from_state == "timed_out" for from_state, _to in finals[1:])


def test_a_forced_cancel_and_a_result_settle_on_one_final_state(engine: Engine) -> None:
    run_id = _run_at_agent(engine, "running")
    with (
        _answered_after(engine, "FROM runs WHERE runs.id =", run_id, "succeeded"),
        session_scope(engine) as session,
    ):
        cancel_run(session, run_id, force=True)
    assert run_state(engine, run_id) == "canceled"
    finals = _final_hops(engine, run_id)
    assert finals[0] == ("running", "canceled")
    assert all(from_state == "canceled" for from_state, _to in finals[1:])


@pytest.mark.parametrize("length", [2000, 5000])
def test_a_reason_longer_than_its_column_is_cut_not_refused(engine: Engine, length: int) -> None:
    run_id = _run_at_agent(engine, "running")
    failed = Event(command_id=run_id, type="failed", site="s1", agent="a1", reason="x" * length)
    with session_scope(engine) as session:
        apply_messages(session, [failed])
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == "failed" and len(run.reason) == 2000
