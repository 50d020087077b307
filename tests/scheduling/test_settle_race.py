"""A finished step settled by two transactions at once (a controller whose lease ran
out mid-pass and the one that took over) plans its retry once: the second waits for
the first and finds the step settled."""

from __future__ import annotations

import threading

from racing import read_or_locking
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until

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

    def settle_elsewhere() -> None:
        with session_scope(any_engine) as session:
            own = session.get(Run, run_id)
            assert own is not None
            settle_run(session, own, None)

    other = threading.Thread(target=settle_elsewhere)
    reached = read_or_locking(any_engine, other, "FROM run_links")
    with Session(any_engine, expire_on_commit=False) as first:
        own = first.get(Run, run_id)
        assert own is not None
        assert settle_run(first, own, None)
        first.flush()  # the retry is written, not committed yet
        other.start()
        wait_until(reached, timeout=10, what="the other pass to read the step or wait")
        first.commit()
    other.join(timeout=10)
    assert not other.is_alive()
    with Session(any_engine) as session:
        runs = session.exec(select(Run).where(Run.task_id == batch.id)).all()
    assert len(runs) == 2, [(r.state, r.reason) for r in runs]  # the failed run, one retry
