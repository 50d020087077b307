"""Two changes of dependencies at once cannot close a cycle between them: on both
dialects the second waits for the first to commit, then finds the cycle and is refused.
Each alone was checked against the edges committed before it, so A -> B and B -> A
sent together were both stored, and the next create or change reaching the pair looped
for ever in the join check (holding the writer every create waits for)."""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until

from tme.controller.services.tasks import create_task, update_task
from tme.controller.services.workflow_reach import roots
from tme.controller.store.db import session_scope
from tme.controller.store.models import TaskDependency
from tme.controller.store.sqlite_gate import gate_of
from tme.errors import ValidationError
from tme.schemas import Dependency, TaskCreate, TaskUpdate


def _waits_for_the_lock(engine: Engine) -> bool:
    """Whether a transaction waits for the dependency lock (SQLite: the write gate)."""
    gate = gate_of(engine)
    if gate is not None:
        return bool(gate.waiting)
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return bool(connection.execute(text(query)).scalar())


def test_two_changes_at_once_cannot_close_a_cycle(any_engine: Engine) -> None:
    with session_scope(any_engine) as session:
        a, _ = create_task(session, TaskCreate(name="A", trigger="cycle-race-a"))
        b, _ = create_task(session, TaskCreate(name="B", trigger="cycle-race-b"))
    a_id, b_id = a.id or 0, b.id or 0
    refused: list[BaseException] = []

    def b_after_a() -> None:
        try:
            with session_scope(any_engine) as session:
                update_task(session, b_id, TaskUpdate(depends_on=[Dependency(task=a_id)]))
        except ValidationError as exc:
            refused.append(exc)

    second = threading.Thread(target=b_after_a)
    with Session(any_engine, expire_on_commit=False) as session:
        update_task(session, a_id, TaskUpdate(depends_on=[Dependency(task=b_id)]))
        session.flush()  # A's edge is in, not committed
        second.start()
        wait_until(
            lambda: _waits_for_the_lock(any_engine) or not second.is_alive(),
            what="the second change to wait for the first",
        )
        session.commit()
    second.join(timeout=10)
    assert not second.is_alive()
    assert len(refused) == 1 and "dependency cycle" in str(refused[0])
    with session_scope(any_engine) as session:
        edges = session.exec(
            select(TaskDependency.task_id, TaskDependency.predecessor_id).where(
                TaskDependency.task_id.in_([a_id, b_id])  # type: ignore[attr-defined]
            )
        ).all()
    assert sorted(edges) == [(a_id, b_id)]


def test_a_cycle_stored_before_this_check_ends_the_join_check() -> None:
    """A database may hold a cycle stored before changes were serialized: the join check
    (which tasks' workflow runs a task runs in) ends on it, instead of looping for ever
    in a request, or in the scheduling pass deciding a join."""
    edges = {3: [1], 1: [2], 2: [1]}  # 3 depends on 1; 1 and 2 on each other
    found: dict[int, frozenset[int]] = {}
    walk = threading.Thread(target=lambda: found.update({3: roots(edges, 3, {})}), daemon=True)
    walk.start()
    walk.join(timeout=10)
    assert not walk.is_alive(), "roots() loops on a cycle"
    assert found[3] >= {3}
