"""Store contract: run transitions, their events, the task's mirror of its latest run, dedup."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent, Task
from tme.errors import IllegalTransition
from tme.schemas import TaskCreate
from tme.states import RunState

T0 = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


def new_task(engine: Engine) -> tuple[int, str]:
    with session_scope(engine) as session:
        task, _ = service.create_task(session, TaskCreate(name="pump"))
        assert task.id is not None and task.latest_run_id is not None
        return task.id, task.latest_run_id


def move(engine: Engine, run_id: str, state: RunState, at: datetime, **kw: str) -> bool:
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run_service.transition(session, run, state, at=at, **kw)


def events_of(session: Session, run_id: str) -> list[RunEvent]:
    query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
    return list(session.exec(query).all())


def test_transitions_are_recorded_with_time_and_reason(engine: Engine) -> None:
    task_id, run_id = new_task(engine)
    steps = [
        (RunState.queued, "waiting for dispatch", "controller"),
        (RunState.dispatched, "broker confirmed", "dispatcher"),
        (RunState.running, "agent started", "agent"),
        (RunState.succeeded, "done", "agent"),
    ]
    for n, (state, reason, source) in enumerate(steps, start=1):
        assert move(engine, run_id, state, T0 + timedelta(seconds=n), reason=reason, source=source)
    with session_scope(engine) as session:
        events = events_of(session, run_id)
        assert [(e.from_state, e.to_state) for e in events] == [
            (None, "pending"),
            ("pending", "queued"),
            ("queued", "dispatched"),
            ("dispatched", "running"),
            ("running", "succeeded"),
        ]
        assert [(e.reason, e.source) for e in events[1:]] == [(r, s) for _, r, s in steps]
        assert [e.at for e in events[1:]] == [T0 + timedelta(seconds=n) for n in range(1, 5)]
        assert all(e.at.tzinfo is UTC for e in events)
        run = session.get(Run, run_id)
        assert run is not None
        assert (run.state, run.reason) == ("succeeded", "done")
        assert run.started_at == T0 + timedelta(seconds=3)
        assert run.finished_at == T0 + timedelta(seconds=4)
        task = session.get(Task, task_id)
        assert task is not None
        assert (task.status, task.started_at, task.finished_at) == (
            "succeeded",
            run.started_at,
            run.finished_at,
        )


def test_task_mirrors_only_its_latest_run(engine: Engine) -> None:
    task_id, first = new_task(engine)
    move(engine, first, RunState.running, T0)
    move(engine, first, RunState.failed, T0 + timedelta(seconds=1))
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        second = run_service.start_run(session, task, reason="retry", source="test", attempt=2)
        second_id = second.id
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        assert (task.status, task.latest_run_id, task.started_at, task.finished_at) == (
            "pending",
            second_id,
            None,
            None,
        )
    # A late hop on the old run is recorded there but does not touch the task.
    with session_scope(engine) as session:
        old = session.get(Run, first)
        assert old is not None
        assert not run_service.record_hop(
            session, old, RunState.succeeded, reason="late", at=T0 + timedelta(seconds=9)
        )
    move(engine, second_id, RunState.running, T0 + timedelta(seconds=10))
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        old = session.get(Run, first)
        assert task is not None and old is not None
        assert (task.status, task.started_at, task.finished_at) == (
            "running",
            T0 + timedelta(seconds=10),
            None,
        )
        assert old.state == "failed" and old.result is None  # no result came with it
        assert events_of(session, first)[-1].reason == "late result: late"


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([RunState.running, RunState.succeeded], RunState.failed),
        ([RunState.running], RunState.queued),
        ([RunState.running], RunState.rejected),
        ([RunState.queued], RunState.skipped),
        ([RunState.canceled], RunState.running),
    ],
)
def test_illegal_transitions_write_nothing(
    engine: Engine, count: Callable[[str], int], path: list[RunState], refused: RunState
) -> None:
    task_id, run_id = new_task(engine)
    for n, state in enumerate(path):
        move(engine, run_id, state, T0 + timedelta(seconds=n))
    before = count("run_events")
    with pytest.raises(IllegalTransition, match=refused.value):
        move(engine, run_id, refused, T0 + timedelta(minutes=5), reason="nope")
    assert count("run_events") == before
    with session_scope(engine) as session:
        run, task = session.get(Run, run_id), session.get(Task, task_id)
        assert run is not None and task is not None
        assert run.state == path[-1] and task.status == path[-1]
        assert run.updated_at == T0 + timedelta(seconds=len(path) - 1)


def test_same_state_is_a_no_op(engine: Engine, count: Callable[[str], int]) -> None:
    _, run_id = new_task(engine)
    assert move(engine, run_id, RunState.running, T0)
    before = count("run_events")
    assert not move(engine, run_id, RunState.running, T0 + timedelta(seconds=1))
    assert count("run_events") == before


def test_a_redelivered_event_is_applied_once(engine: Engine, count: Callable[[str], int]) -> None:
    _, run_id = new_task(engine)
    event_id = str(uuid.uuid4())
    assert move(engine, run_id, RunState.running, T0, event_id=event_id)
    before = count("run_events")
    # the same wire event again, even asking for another state, changes nothing
    assert not move(engine, run_id, RunState.succeeded, T0, event_id=event_id)
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert not run_service.record_hop(session, run, RunState.failed, event_id=event_id)
    assert count("run_events") == before
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == "running"
        assert [e.event_id for e in events_of(session, run_id)].count(event_id) == 1


def test_out_of_order_hops_are_kept_beside_the_state(engine: Engine) -> None:
    _, run_id = new_task(engine)
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert run_service.record_hop(session, run, RunState.running, at=T0, source="agent")
        assert not run_service.record_hop(
            session, run, RunState.delivered, at=T0 - timedelta(seconds=1), source="gateway"
        )
        assert run_service.record_hop(session, run, RunState.timed_out, at=T0, reason="deadline")
        assert not run_service.record_hop(
            session, run, RunState.succeeded, reason="agent finished", result={"value": 7}
        )
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert run.state == "timed_out" and run.result == {"late_result": {"value": 7}}
        tail = [(e.to_state, e.reason) for e in events_of(session, run_id)[1:]]
        assert tail == [
            ("running", ""),
            ("delivered", "out of order"),
            ("timed_out", "deadline"),
            ("succeeded", "late result: agent finished"),
        ]


def test_log_lines_are_stored_in_order(engine: Engine) -> None:
    _, run_id = new_task(engine)
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run_service.append_log(session, run, "first\nsecond\n\nfourth", at=T0)
    from tme.controller.services.queries import get_run_detail

    with session_scope(engine) as session:
        detail = get_run_detail(session, run_id)
    assert [line.line for line in detail.log] == ["first", "second", "", "fourth"]
    assert all(line.at == T0 for line in detail.log)
