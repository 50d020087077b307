"""Exclusive resources: of the tasks naming a resource, one run at a time is active.

A run whose resource another active run holds waits, saying which run holds it, and
starts once that run has ended (whatever its outcome) and settled; runs waiting for a
resource go by their task's priority, higher first, and equal priorities oldest first,
across tasks. Two creates at once never both start."""

from __future__ import annotations

import threading
import uuid

import pytest
from racing import race
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.retries import start_due_retries
from tme.controller.run_ready import RunReady
from tme.controller.services.cancel import cancel_run
from tme.controller.services.launch import launch_run
from tme.controller.services.resources import list_resources
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task, delete_task, update_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, Task, utcnow
from tme.controller.workflow import settle_pending
from tme.errors import Conflict
from tme.schemas import TaskCreate, TaskUpdate
from tme.states import FINAL_STATES, RunState


@pytest.fixture
def hook() -> RunReady:
    return RunReady(Settings(), threading.Event())


def _create(
    engine: Engine, hook: RunReady, name: str, resources: list[str], priority: int = 5
) -> tuple[int, Run]:
    """An external task naming `resources`, created to run at once: its id and first run."""
    with session_scope(engine) as session:
        task, _ = create_task(
            session,
            TaskCreate(name=name, resources=resources, priority=priority),
            on_run_ready=hook,
        )
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        return task.id or 0, run


def _run(engine: Engine, run_id: str) -> Run:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _end(engine: Engine, hook: RunReady, run_id: str, state: RunState) -> None:
    """The run ends in `state`, then the workflow engine settles it."""
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        transition(session, run, state, reason=f"ended {state}")
    with session_scope(engine) as session:
        settle_pending(session, hook)


@pytest.mark.parametrize(
    "outcome", [RunState.succeeded, RunState.failed, RunState.canceled, RunState.timed_out]
)
def test_a_run_waits_for_the_resource_and_starts_once_its_holder_ends(
    engine: Engine, hook: RunReady, outcome: RunState
) -> None:
    flush_id, flush = _create(engine, hook, "flush tank1", ["tank1"])
    fill_id, fill = _create(engine, hook, "fill tank1", ["tank1", "cell-a"])
    assert flush.state == RunState.pending  # an external run: started, its report awaited
    assert fill.state == RunState.waiting
    assert fill.reason == (
        f"waiting for resource tank1, held by run {flush.id} of task {flush_id} (flush tank1)"
    )
    # Tasks naming other resources, or none, start as before.
    assert _create(engine, hook, "drain tank2", ["tank2"])[1].state == RunState.pending
    assert _create(engine, hook, "read level", [])[1].state == RunState.pending
    _end(engine, hook, flush.id, outcome)
    assert _run(engine, fill.id).state == RunState.queued  # ready for its report
    # Now the fill holds tank1: "run now" of the flush waits for it.
    with session_scope(engine) as session:
        task = session.get(Task, flush_id)
        assert task is not None
        again = launch_run(session, task, cause="manual", reason="run now", hook=hook)
        assert again.state == RunState.waiting
        assert f"held by run {fill.id} of task {fill_id} (fill tank1)" in again.reason


def test_a_run_naming_two_resources_waits_for_both(engine: Engine, hook: RunReady) -> None:
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    _, weld = _create(engine, hook, "weld in cell a", ["cell-a"])
    _, both = _create(engine, hook, "fill tank1 in cell a", ["cell-a", "tank1"])
    assert both.state == RunState.waiting
    _end(engine, hook, flush.id, RunState.succeeded)
    waiting = _run(engine, both.id)
    assert waiting.state == RunState.waiting
    assert waiting.reason.startswith(f"waiting for resource cell-a, held by run {weld.id}")
    _end(engine, hook, weld.id, RunState.succeeded)
    assert _run(engine, both.id).state == RunState.queued


def test_runs_waiting_for_a_resource_start_oldest_first(engine: Engine, hook: RunReady) -> None:
    _, first = _create(engine, hook, "flush tank1", ["tank1"])
    _, second = _create(engine, hook, "fill tank1", ["tank1"])
    _, third = _create(engine, hook, "stir tank1", ["tank1"])
    _end(engine, hook, first.id, RunState.succeeded)
    assert _run(engine, second.id).state == RunState.queued
    assert _run(engine, third.id).state == RunState.waiting
    assert f"held by run {second.id}" in _run(engine, third.id).reason
    _end(engine, hook, second.id, RunState.failed)
    assert _run(engine, third.id).state == RunState.queued


def test_runs_waiting_for_a_resource_start_higher_priority_first_then_oldest(
    engine: Engine, hook: RunReady
) -> None:
    _, holder = _create(engine, hook, "flush tank1", ["tank1"], priority=5)
    _, meters = _create(engine, hook, "read all the meters", ["tank1"], priority=1)
    _, inlet = _create(engine, hook, "close the inlet valve", ["tank1"], priority=9)
    _, more = _create(engine, hook, "read the meters again", ["tank1"], priority=1)
    _, stir = _create(engine, hook, "stir tank1", ["tank1"], priority=5)
    waiting = [inlet, stir, meters, more]  # the order they go in
    assert {_run(engine, run.id).state for run in waiting} == {RunState.waiting}
    with Session(engine) as session:
        (listed,) = list_resources(session, None, ["tank1"])
    assert [(w.run_id, w.priority) for w in listed.waiting] == [
        (inlet.id, 9),
        (stir.id, 5),
        (meters.id, 1),
        (more.id, 1),
    ]
    ending = holder
    for run in waiting:
        _end(engine, hook, ending.id, RunState.succeeded)
        assert _run(engine, run.id).state == RunState.queued, run.reason
        behind = waiting[waiting.index(run) + 1 :]
        assert {_run(engine, r.id).state for r in behind} <= {RunState.waiting}
        ending = run


def test_a_run_waits_behind_one_of_higher_or_equal_priority_not_lower(
    engine: Engine, hook: RunReady
) -> None:
    """tank1 is free, but a run waits for it (and for cell-a, held): a new run of lower or
    equal priority waits behind it; one of higher priority goes first."""
    _create(engine, hook, "weld in cell a", ["cell-a"])  # holds cell-a
    _, fill = _create(engine, hook, "fill tank1 in cell a", ["cell-a", "tank1"], priority=5)
    assert _run(engine, fill.id).state == RunState.waiting
    _, meters = _create(engine, hook, "read all the meters", ["tank1"], priority=1)
    _, level = _create(engine, hook, "read the level", ["tank1"], priority=5)
    for behind in (meters, level):
        assert behind.state == RunState.waiting
        assert behind.reason.startswith(f"waiting for resource tank1, after run {fill.id}")
    _, inlet = _create(engine, hook, "close the inlet valve", ["tank1"], priority=9)
    assert inlet.state == RunState.pending  # started: it holds tank1 now


def test_a_due_retry_waits_for_the_resource(engine: Engine, hook: RunReady) -> None:
    with session_scope(engine) as session:
        retries = {"max": 1, "backoff_s": 0, "jitter": 0}
        task, _ = create_task(
            session,
            TaskCreate(name="fill tank1", resources=["tank1"], retries=retries),
            on_run_ready=hook,
        )
        fill_id, first = task.id or 0, task.latest_run_id or ""
    _end(engine, hook, first, RunState.failed)  # its retry is planned
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])  # tank1 is free meanwhile
    with session_scope(engine) as session:
        start_due_retries(session, hook, utcnow())
    with Session(engine) as session:
        retry = session.exec(select(Run).where(Run.task_id == fill_id, Run.attempt == 2)).one()
    assert retry.state == RunState.waiting
    assert retry.reason.startswith(f"waiting for resource tank1, held by run {flush.id}")
    _end(engine, hook, flush.id, RunState.succeeded)
    assert _run(engine, retry.id).state == RunState.queued


def test_a_workflow_step_waits_for_the_resource(engine: Engine, hook: RunReady) -> None:
    mix_id, mix = _create(engine, hook, "mix", [])
    with session_scope(engine) as session:
        after, _ = create_task(
            session,
            TaskCreate(name="fill tank1", resources=["tank1"], depends_on=[{"task": mix_id}]),
            on_run_ready=hook,
        )
        after_id = after.id or 0
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    _end(engine, hook, mix.id, RunState.succeeded)  # the step's turn: tank1 is held
    with Session(engine) as session:
        step = session.exec(select(Run).where(Run.task_id == after_id)).one()
    assert step.state == RunState.waiting
    assert step.reason.startswith(f"waiting for resource tank1, held by run {flush.id}")
    _end(engine, hook, flush.id, RunState.succeeded)
    assert _run(engine, step.id).state == RunState.queued


def test_a_canceled_waiting_run_leaves_the_resource_free(engine: Engine, hook: RunReady) -> None:
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    _, fill = _create(engine, hook, "fill tank1", ["tank1"])
    assert fill.state == RunState.waiting
    with session_scope(engine) as session:
        cancel_run(session, fill.id)
    with session_scope(engine) as session:
        settle_pending(session, hook)
    assert _run(engine, fill.id).state == RunState.canceled
    assert _run(engine, flush.id).state == RunState.pending  # the holder goes on
    _end(engine, hook, flush.id, RunState.succeeded)
    assert _create(engine, hook, "stir tank1", ["tank1"])[1].state == RunState.pending


def test_a_change_of_resources_lets_a_waiting_run_go(engine: Engine, hook: RunReady) -> None:
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    fill_id, fill = _create(engine, hook, "fill tank1", ["tank1"])
    with session_scope(engine) as session:
        task = update_task(session, fill_id, TaskUpdate(resources=["tank2"]), hook=hook)
        assert task.resources == ["tank2"]
    assert _run(engine, fill.id).state == RunState.queued
    assert _run(engine, flush.id).state == RunState.pending


def test_two_creates_at_once_for_one_resource_start_one_run(
    any_engine: Engine, hook: RunReady
) -> None:
    resource = f"tank-{uuid.uuid4().hex[:8]}"  # PostgreSQL's database is shared by tests

    def first(session: Session) -> None:
        create_task(session, TaskCreate(name="flush", resources=[resource]), on_run_ready=hook)

    def second() -> None:
        with session_scope(any_engine) as session:
            create_task(session, TaskCreate(name="fill", resources=[resource]), on_run_ready=hook)

    race(
        any_engine,
        first,
        second,
        "JOIN task_resources",
        "the second create to check or lock",
        writes=False,
    )
    with Session(any_engine) as session:
        runs = session.exec(
            select(Run)
            .join(Task, col(Task.id) == col(Run.task_id))
            .where(col(Task.resources).is_not(None), col(Task.name).in_(["flush", "fill"]))
        ).all()
        ours = [r for r in runs if resource in (session.get(Task, r.task_id) or Task()).resources]
    started = [r for r in ours if r.state not in FINAL_STATES and r.state != RunState.waiting]
    assert len(ours) == 2 and len(started) == 1, [(r.state, r.reason) for r in ours]


@pytest.mark.parametrize("cleared", [[], None])
def test_a_waiting_run_whose_task_names_no_resource_any_more_goes(
    engine: Engine, hook: RunReady, cleared: list[str] | None
) -> None:
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    fill_id, fill = _create(engine, hook, "fill tank1", ["tank1"])
    with session_scope(engine) as session:
        task = update_task(session, fill_id, TaskUpdate(resources=cleared), hook=hook)
        assert task.resources == []
    assert _run(engine, fill.id).state == RunState.queued
    assert _run(engine, flush.id).state == RunState.pending


def test_deleting_the_holders_task_lets_the_waiting_run_go(
    any_engine: Engine, hook: RunReady
) -> None:
    tank = f"tank-{uuid.uuid4().hex[:8]}"  # PostgreSQL's database is shared by tests
    flush_id, flush = _create(any_engine, hook, "flush", [tank])
    assert flush.state == RunState.pending  # an external run not started: deletable
    _, fill = _create(any_engine, hook, "fill", [tank])
    assert _run(any_engine, fill.id).state == RunState.waiting
    with session_scope(any_engine) as session:
        delete_task(session, flush_id, hook)
    assert _run(any_engine, fill.id).state == RunState.queued


def test_naming_a_held_resource_while_a_run_is_going_is_refused(
    engine: Engine, hook: RunReady
) -> None:
    _, flush = _create(engine, hook, "flush tank1", ["tank1"])
    fill_id, fill = _create(engine, hook, "fill tank1", [])  # going, holding nothing
    with session_scope(engine) as session, pytest.raises(Conflict) as refused:
        update_task(session, fill_id, TaskUpdate(resources=["tank1"]), hook=hook)
    assert str(refused.value).startswith(
        f"task {fill_id} has run {fill.id} going (pending) and resource tank1 is held by"
        f" run {flush.id} of task"
    )
    with Session(engine) as session:
        assert (session.get(Task, fill_id) or Task()).resources == []
    # A resource nobody holds may be named by a task with a run going: that run holds it.
    with session_scope(engine) as session:
        update_task(session, fill_id, TaskUpdate(resources=["tank2"]), hook=hook)
    assert _create(engine, hook, "drain tank2", ["tank2"])[1].state == RunState.waiting
    _end(engine, hook, flush.id, RunState.succeeded)  # tank1 free: the change goes through
    with session_scope(engine) as session:
        update_task(session, fill_id, TaskUpdate(resources=["tank2", "tank1"]), hook=hook)


def test_naming_a_resource_while_two_runs_of_the_task_are_going_is_refused(
    engine: Engine, hook: RunReady
) -> None:
    with session_scope(engine) as session:
        body = TaskCreate(name="sample", overlap={"policy": "allow", "max": 2})
        task, _ = create_task(session, body, on_run_ready=hook)
        first = task.latest_run_id
        second = launch_run(session, task, cause="manual", reason="run now", hook=hook)
        assert second.state == RunState.pending
        task_id, second_id = task.id or 0, second.id
    with session_scope(engine) as session, pytest.raises(Conflict) as refused:
        update_task(session, task_id, TaskUpdate(resources=["tank1"]), hook=hook)
    assert str(refused.value) == (
        f"task {task_id} has run {first} going (pending) and its run {second_id} (pending)"
        " too, both would hold tank1; change its resources once one of them has ended"
    )
