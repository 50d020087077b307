"""Two runs of one rollout settled at once, in two transactions (two controllers, or
two passes): the second waits for the first's decision on the rollout's row, so the
next two devices start once each, never one of them twice."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from rollout_fleet import plant, speed
from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from waiting import wait_until

from tme.controller.services.rollouts import create_rollout
from tme.controller.services.runs import transition
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.store.rollout_models import RolloutDevice
from tme.controller.store.sqlite_gate import gate_of
from tme.controller.workflow import settle_run
from tme.rollout_schemas import RolloutCreate
from tme.states import RunState


def _deciding(engine: Engine, thread: threading.Thread) -> threading.Event:
    """Set once `thread` locks the rollout's row, or (were the row not locked) has read
    where the rollout's devices stand: from then on its decision is made."""
    reached = threading.Event()

    def before(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        locks = "FROM rollouts" in statement and "FOR UPDATE" in statement
        if threading.current_thread() is thread and locks:
            reached.set()

    def after(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if threading.current_thread() is thread and "FROM rollout_devices" in statement:
            reached.set()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return reached


def test_two_runs_settling_at_once_start_the_next_two_devices_once_each(
    any_engine: Engine,
) -> None:
    site = f"race-{uuid.uuid4().hex[:8]}"
    plant(any_engine, site)
    body = RolloutCreate(**speed(window=2, match={"site": site, "profile": "pump"}))
    with session_scope(any_engine) as session:
        rollout_id = create_rollout(session, body, "ana", None).id
        rows = session.exec(
            select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id)
        ).all()
        first_runs = [d.run_id for d in sorted(rows, key=lambda d: d.position)[:2]]
        for run_id in first_runs:
            run = session.get(Run, run_id)
            assert run is not None
            transition(session, run, RunState.succeeded, reason="done")

    def settle(session: Session, run_id: str | None) -> None:
        run = session.get(Run, run_id)
        assert run is not None
        assert settle_run(session, run, None)

    def settle_elsewhere() -> None:
        with session_scope(any_engine) as session:
            settle(session, first_runs[1])

    other = threading.Thread(target=settle_elsewhere)
    deciding = _deciding(any_engine, other)
    gate = gate_of(any_engine)
    with Session(any_engine, expire_on_commit=False) as session:
        settle(session, first_runs[0])  # starts the third device, not committed yet
        session.flush()
        other.start()
        wait_until(
            lambda: deciding.is_set() or bool(gate and gate.waiting),
            timeout=10,
            what="the other settle to decide",
        )
        session.commit()
    other.join(timeout=10)
    assert not other.is_alive()
    with Session(any_engine) as session:
        devices = session.exec(
            select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id)
        ).all()
        task_ids = [d.task_id for d in devices]
        runs = session.exec(
            select(Run.task_id, func.count())
            .where(col(Run.task_id).in_(task_ids))
            .group_by(col(Run.task_id))
        ).all()
    assert sorted(count for _, count in runs) == [1, 1, 1, 1]  # each device started once
    assert {d.phase for d in devices} == {"started"}
