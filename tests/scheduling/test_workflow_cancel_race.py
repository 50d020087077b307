"""A workflow run canceled while the workflow engine decides one of its steps, on both
stores: the step starts before the cancel reads the runs going (and is canceled with
them), or the engine waits for the cancel and skips it; never started after it. And a
run whose agent answers `failed` after the cancel is not retried."""

from __future__ import annotations

import threading
from collections.abc import Callable

from racing import read_or_locking
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until

from tme.controller.services.cancel import cancel_workflow
from tme.controller.services.launch import launch_run
from tme.controller.services.roles import Principal, Role
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.services.workflow_cancel import record_cancel
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import RunState

OPERATOR = Principal(0, "op", Role.operator, ("*",))


def _finished_batch(engine: Engine, state: RunState, **fields: object) -> tuple[str, int]:
    """A batch run finished in `state`, not settled yet, and its clean-up task (`on:
    any`): the workflow run and the clean-up's task id."""
    with session_scope(engine) as session:
        data = {"name": "batch", "trigger": "go", **fields}
        batch, _ = create_task(session, TaskCreate.model_validate(data))
        data = {"name": "clean up", "depends_on": [{"task": batch.id, "on": "any"}]}
        cleanup, _ = create_task(session, TaskCreate.model_validate(data))
        run = launch_run(session, batch, cause="trigger", reason="trigger go", hook=None)
        transition(session, run, state, reason=f"reported {state}")
        return run.id, cleanup.id or 0


def _finished_step(engine: Engine) -> tuple[str, str, int]:
    """A batch that succeeded, its flush (a step) that succeeded, not settled yet, and the
    flush's clean-up (`on: any`): the workflow run, the flush's run and the clean-up."""
    workflow_id, flush = _finished_batch(engine, RunState.succeeded)
    with session_scope(engine) as session:
        data = {"name": "clean up", "depends_on": [{"task": flush, "on": "any"}]}
        cleanup, _ = create_task(session, TaskCreate.model_validate(data))
    _settle(engine, workflow_id)  # the flush starts
    (step,) = _runs_of(engine, flush)
    with session_scope(engine) as session:
        transition(session, session.get_one(Run, step.id), RunState.succeeded, reason="done")
    return workflow_id, step.id, cleanup.id or 0


def _settle(engine: Engine, run_id: str) -> None:
    with session_scope(engine) as session:
        settle_run(session, session.get_one(Run, run_id), None)


def _runs_of(engine: Engine, task_id: int) -> list[Run]:
    with Session(engine) as session:
        return list(session.exec(select(Run).where(Run.task_id == task_id)).all())


def _read_or_waiting(engine: Engine, thread: threading.Thread) -> Callable[[], bool]:
    """Whether `thread` has read whether the workflow run is canceled, or waits for a lock
    (a locking read; on SQLite the write gate; on PostgreSQL also the key share a
    foreign key check takes on the workflow run's first run, which the cancel locks)."""
    reached = read_or_locking(engine, thread, "workflow_cancels", writes=False)
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def check() -> bool:
        if reached() or engine.dialect.name != "postgresql":
            return reached()
        with engine.connect() as connection:
            return bool(connection.execute(waiting).scalar())

    return check


def test_a_step_decided_while_the_cancel_is_recorded_is_skipped(any_engine: Engine) -> None:
    """The cancel is written, not committed, when the engine decides the clean-up: the
    engine waits for it (its first run locked) and skips the step, where it read no
    cancel and started it after the cancel had read the runs going."""
    workflow_id, flush_run, cleanup = _finished_step(any_engine)
    other = threading.Thread(target=_settle, args=(any_engine, flush_run))
    reached = _read_or_waiting(any_engine, other)
    with Session(any_engine, expire_on_commit=False) as session:
        record_cancel(session, workflow_id, OPERATOR)
        session.flush()  # written, not committed: its transaction goes on
        other.start()
        wait_until(reached, timeout=10, what="the engine to decide the clean-up")
        session.commit()
    other.join(timeout=10)
    assert not other.is_alive()
    (step,) = _runs_of(any_engine, cleanup)
    assert (step.state, step.reason) == ("skipped", f"workflow run {workflow_id} canceled by op")


def test_a_run_its_agent_fails_after_the_cancel_is_not_retried(any_engine: Engine) -> None:
    """Asked to stop, the agent answers `failed` (the failure came first): no retry."""
    target = {"site": "s1", "agent": "a1"}
    retries = {"max": 2, "backoff_s": 0}
    workflow_id, _ = _finished_batch(
        any_engine, RunState.running, op="noop", target=target, retries=retries
    )
    with session_scope(any_engine) as session:
        done = cancel_workflow(session, workflow_id, OPERATOR)
        assert [r.state for r in done.runs] == ["running"]  # its agent asked to stop
    with session_scope(any_engine) as session:
        transition(session, session.get_one(Run, workflow_id), RunState.failed, reason="failed")
    _settle(any_engine, workflow_id)
    with Session(any_engine) as session:
        run = session.get_one(Run, workflow_id)
        runs = session.exec(select(Run).where(Run.task_id == run.task_id)).all()
    assert len(runs) == 1
    assert run.reason.endswith(f"not retried: workflow run {workflow_id} canceled by op")
