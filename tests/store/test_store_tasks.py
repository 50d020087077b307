"""Store contract: tasks, idempotency keys, dependency edges, cascades, UTC timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError
from sqlmodel import select

from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent, Task, TaskDependency
from tme.errors import Conflict, NotFound, ValidationError
from tme.schemas import TaskCreate, TaskUpdate
from tme.states import RunState


def body(**fields: Any) -> TaskCreate:
    return TaskCreate.model_validate({"name": "task", **fields})


def create(engine: Engine, **fields: Any) -> int:
    with session_scope(engine) as session:
        task, created = service.create_task(session, body(**fields))
        assert created
        assert task.id is not None
        return task.id


def test_create_get_update_delete(engine: Engine, count: Callable[[str], int]) -> None:
    task_id = create(
        engine,
        name="set pump speed",
        op="modbus.write",
        target={"site": "plant-1", "agent": "skid-a", "device": "pump1"},
        params={"point": "speed_setpoint", "value": 1200},
        schedule={"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"},
        retries={"max": 2, "backoff_s": 1},
    )
    with session_scope(engine) as session:
        public = service.to_public(service.get_task(session, task_id))
    assert public.name == "set pump speed" and public.op == "modbus.write"
    assert public.target is not None and public.target.device == "pump1"
    assert public.params == {"point": "speed_setpoint", "value": 1200, "verify": False}
    assert public.schedule is not None and public.schedule.cron == "0 6 * * 1-5"
    assert public.retries.max == 2
    assert public.status == "idle" and public.latest_run_id is None  # scheduled: no run yet
    assert count("runs") == 0

    with session_scope(engine) as session:
        service.update_task(
            session,
            task_id,
            TaskUpdate(name="renamed", priority=1, params={"point": "p", "value": 2}),
        )
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        assert (task.name, task.priority, task.params["value"]) == ("renamed", 1, 2)
        assert task.updated_at > task.created_at

    with session_scope(engine) as session:
        service.delete_task(session, task_id)
    with pytest.raises(NotFound, match=f"task {task_id}"), session_scope(engine) as session:
        service.get_task(session, task_id)
    assert count("tasks") == 0


def test_a_task_without_schedule_starts_a_pending_run(engine: Engine) -> None:
    task_id = create(engine)
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        run = session.get(Run, task.latest_run_id)
        assert run is not None and run.state == "pending" and task.status == "pending"
        events = session.exec(select(RunEvent).where(RunEvent.run_id == run.id)).all()
        assert [(e.from_state, e.to_state, e.reason) for e in events] == [
            (None, "pending", "created")
        ]


def test_refused_update_writes_nothing(engine: Engine) -> None:
    task_id = create(engine, op="noop", target={"site": "s1", "agent": "a1"})
    with pytest.raises(ValidationError, match="needs a target"), session_scope(engine) as session:
        service.update_task(session, task_id, TaskUpdate(target={"site": "s1"}, name="x"))
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        assert (task.name, task.agent) == ("task", "a1")


def test_delete_cascades_to_runs_events_and_logs(
    engine: Engine, count: Callable[[str], int]
) -> None:
    keep = create(engine, name="keep")
    doomed = create(engine, name="doomed")
    with session_scope(engine) as session:
        for task_id in (keep, doomed):
            task = service.get_task(session, task_id)
            run = session.get(Run, task.latest_run_id)
            assert run is not None
            run_service.transition(session, run, RunState.succeeded, reason="done")
            run_service.append_log(session, run, "one\ntwo")
            run_service.start_run(session, task, reason="again", source="test", attempt=2)
    assert (count("runs"), count("run_events"), count("run_logs")) == (4, 6, 4)
    with session_scope(engine) as session:
        service.delete_task(session, doomed)
    assert (count("tasks"), count("runs"), count("run_events"), count("run_logs")) == (1, 2, 3, 2)
    with session_scope(engine) as session:
        assert {r.task_id for r in session.exec(select(Run))} == {keep}


# --- idempotency keys ---------------------------------------------------------------


def test_idempotency_key_replays_and_conflicts(engine: Engine, count: Callable[[str], int]) -> None:
    with session_scope(engine) as session:
        first, created = service.create_task(session, body(name="once"), idempotency_key="k-1")
    assert created
    with session_scope(engine) as session:
        again, created = service.create_task(session, body(name="once"), idempotency_key="k-1")
    assert not created and again.id == first.id
    assert (count("tasks"), count("runs"), count("idempotency_keys")) == (1, 1, 1)

    with (
        pytest.raises(Conflict, match="different request body") as info,
        session_scope(engine) as session,
    ):
        service.create_task(session, body(name="other"), idempotency_key="k-1")
    assert info.value.details == {"idempotency_key": "k-1", "task_id": first.id}
    assert (count("tasks"), count("idempotency_keys")) == (1, 1)

    with session_scope(engine) as session:
        other, created = service.create_task(session, body(name="once"), idempotency_key="k-2")
    assert created and other.id != first.id

    with session_scope(engine) as session:
        service.delete_task(session, first.id or 0)
    with pytest.raises(Conflict, match="was deleted"), session_scope(engine) as session:
        service.create_task(session, body(name="once"), idempotency_key="k-1")


# --- dependencies -----------------------------------------------------------------------


def edges(engine: Engine) -> set[tuple[int, int, str]]:
    with session_scope(engine) as session:
        return {(e.task_id, e.predecessor_id, e.on) for e in session.exec(select(TaskDependency))}


def test_dependency_edges_and_cycles(engine: Engine, count: Callable[[str], int]) -> None:
    a = create(engine, name="a")
    b = create(engine, name="b", depends_on=[{"task": a, "on": "failure"}])
    c = create(engine, name="c", depends_on=[{"task": b}, {"task": a, "on": "any"}])
    assert edges(engine) == {(b, a, "failure"), (c, b, "success"), (c, a, "any")}
    with session_scope(engine) as session:
        # a task waiting on dependencies has no run until they settle
        assert service.get_task(session, b).latest_run_id is None

    for task_id, deps, match in [
        (
            a,
            [c],
            rf"dependency cycle: {a} -> {c} -> ({b} -> )?{a}$",
        ),
        (a, [b], f"dependency cycle: {a} -> {b} -> {a}"),
        (b, [b], "cannot depend on itself"),
        (b, [999_999], "task 999999 does not exist"),
    ]:
        update = TaskUpdate(depends_on=[{"task": d} for d in deps])
        with pytest.raises(ValidationError, match=match), session_scope(engine) as session:
            service.update_task(session, task_id, update)
    assert edges(engine) == {(b, a, "failure"), (c, b, "success"), (c, a, "any")}

    with pytest.raises(ValidationError, match="does not exist"), session_scope(engine) as session:
        service.create_task(session, body(depends_on=[{"task": 999_999}]))
    assert count("tasks") == 3

    with pytest.raises(Conflict, match="is a dependency of"), session_scope(engine) as session:
        service.delete_task(session, a)

    with session_scope(engine) as session:
        service.update_task(session, c, TaskUpdate(depends_on=[]))
    assert edges(engine) == {(b, a, "failure")}
    with session_scope(engine) as session:
        assert service.get_task(session, c).depends_on == []
        service.delete_task(session, b)  # its own edges go with it
    assert edges(engine) == set()


# --- timestamps and ids ----------------------------------------------------------------------


def test_timestamps_round_trip_utc_aware(engine: Engine) -> None:
    task_id = create(engine)
    tokyo = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=9)))
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        task.started_at = tokyo
        session.add(task)
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        assert task.started_at == tokyo
        assert task.started_at.tzinfo is UTC and task.started_at.hour == 22
        assert task.created_at.tzinfo is UTC
        assert abs(datetime.now(UTC) - task.created_at) < timedelta(minutes=5)


def test_naive_timestamps_are_refused(engine: Engine, count: Callable[[str], int]) -> None:
    with pytest.raises(StatementError, match="naive datetime"), session_scope(engine) as session:
        session.add(Task(name="n", op="external", created_at=datetime(2030, 1, 1)))
        session.flush()
    assert count("tasks") == 0


def test_ids_are_64_bit(engine: Engine) -> None:
    big = 2**40 + 7
    with session_scope(engine) as session:
        session.add(Task(id=big, name="big", op="external"))
    with session_scope(engine) as session:
        task = service.get_task(session, big)
        run_service.start_run(session, task, reason="big", source="test")
    with session_scope(engine) as session:
        assert service.get_task(session, big).status == "pending"
