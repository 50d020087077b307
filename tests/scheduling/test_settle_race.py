"""A finished step settled by two transactions at once (a controller whose lease ran
out mid-pass and the one that took over) plans its retry once: the second waits for
the first and finds the step settled."""

from __future__ import annotations

from racing import race
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import RunState


def test_a_step_settled_twice_at_once_is_retried_once(any_engine: Engine) -> None:
    with session_scope(any_engine) as session:
        retries = {"max": 3, "backoff_s": 60}
        batch, _ = create_task(session, TaskCreate(name="batch", trigger="go", retries=retries))
        run = launch_run(session, batch, cause="trigger", reason="trigger go", hook=None)
        transition(session, run, RunState.failed, reason="reported fail")
    run_id = run.id

    def settle(session: Session) -> bool:
        own = session.get(Run, run_id)
        assert own is not None
        return settle_run(session, own, None)

    def settle_elsewhere() -> None:
        with session_scope(any_engine) as session:
            settle(session)

    def settle_first(session: Session) -> None:
        assert settle(session)  # the retry is written, not committed yet

    race(any_engine, settle_first, settle_elsewhere, "FROM run_links", "the other pass to read")
    with Session(any_engine) as session:
        runs = session.exec(select(Run).where(Run.task_id == batch.id)).all()
    assert len(runs) == 2, [(r.state, r.reason) for r in runs]  # the failed run, one retry
