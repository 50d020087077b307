"""The schedule keeper follows schedule changes without touching the job store for
tasks that never had a schedule (nor reading them), still drops a job whose schedule
is removed, and picks up a change that committed after a later-stamped one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from tme.controller.schedule_fire import FireContext, fire_scheduled, register, unregister
from tme.controller.scheduler import JOBS_TABLE, LOOKBACK, ScheduleKeeper, job_id
from tme.controller.scheduler_lease import Lease
from tme.controller.services.policies import NOT_SCHEDULED, get_policy
from tme.controller.services.tasks import create_task, delete_task, update_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Task
from tme.schemas import TaskCreate, TaskUpdate


@pytest.fixture
def keeper(engine: Engine) -> Iterator[ScheduleKeeper]:
    keeper = ScheduleKeeper(engine, str(engine.url))
    keeper.start()
    yield keeper
    keeper.stop()


def _job_store_statements(engine: Engine, keeper: ScheduleKeeper) -> list[str]:
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if JOBS_TABLE in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        keeper.sync_changes()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def test_unscheduled_tasks_cost_no_job_store_lookup(engine: Engine, keeper) -> None:
    keeper.sync_changes()
    with session_scope(engine) as session:
        for i in range(10):
            create_task(session, TaskCreate(name=f"one-off {i}"))
    assert _job_store_statements(engine, keeper) == []


def _ticking_with_its_job(engine: Engine, keeper: ScheduleKeeper, every_s: float) -> Task:
    """A task firing every `every_s`, its job in the keeper's scheduler."""
    assert keeper.scheduler is not None
    with session_scope(engine) as session:
        task, _ = create_task(session, TaskCreate(name="tick", schedule={"every_s": every_s}))
    keeper.sync_changes()
    assert keeper.scheduler.get_job(job_id(task.id or 0)) is not None
    return task


def test_a_removed_schedule_drops_its_job(engine: Engine, keeper) -> None:
    task = _ticking_with_its_job(engine, keeper, 60)
    with session_scope(engine) as session:
        update_task(session, task.id or 0, TaskUpdate(schedule=None))
    keeper.sync_changes()
    assert keeper.scheduler.get_job(job_id(task.id or 0)) is None


def test_one_off_tasks_stay_out_of_the_change_stream(engine: Engine, keeper) -> None:
    with session_scope(engine) as session:
        made = [create_task(session, TaskCreate(name=f"one-off {i}"))[0] for i in range(20)]
        ticking, _ = create_task(session, TaskCreate(name="tick", schedule={"every_s": 60}))
        stamps = {get_policy(session, task).schedule_changed_at for task in made}
        assert stamps == {NOT_SCHEDULED}
        assert get_policy(session, ticking).schedule_changed_at > NOT_SCHEDULED
    assert keeper.sync_changes() == 1
    assert keeper._seen is not None
    window = keeper._seen - LOOKBACK  # what the keeper reads each pass: the scheduled one
    with engine.connect() as connection:
        read = connection.execute(
            text("SELECT count(*) FROM task_policies WHERE schedule_changed_at > :after"),
            {"after": window},
        ).scalar_one()
    assert read == 1


def test_a_change_committed_after_a_later_stamped_one_is_applied(engine: Engine, keeper) -> None:
    # A change is stamped when made; on a busy controller one stamped earlier can commit
    # after one stamped later has been read. It must still get its job.
    assert keeper.scheduler is not None
    with session_scope(engine) as session:
        late, _ = create_task(session, TaskCreate(name="late", schedule={"every_s": 60}))
        stamped = get_policy(session, late).schedule_changed_at
    keeper.sync_changes()
    with session_scope(engine) as session:
        early, _ = create_task(session, TaskCreate(name="early", schedule={"every_s": 60}))
        get_policy(session, early).schedule_changed_at = stamped - timedelta(milliseconds=50)
    keeper.sync_changes()
    assert keeper.scheduler.get_job(job_id(early.id or 0)) is not None
    assert keeper.sync_changes() == 0  # changes read again are not applied again


def test_jobs_stored_by_an_older_controller_are_built_again(engine: Engine) -> None:
    # A job's stored trigger is kept across restarts; one built by an older controller
    # (cron weekdays read as APScheduler's, 0 = Monday) must not keep firing that way.
    with session_scope(engine) as session:
        task, _ = create_task(
            session, TaskCreate(name="weekdays", schedule={"cron": "0 6 * * 1-5"})
        )
        stamp = get_policy(session, task).schedule_changed_at
    old = ScheduleKeeper(engine, str(engine.url))
    old.start()
    assert old.scheduler is not None
    old.scheduler.modify_job(job_id(task.id or 0), name=stamp.isoformat())  # the old version
    old.stop()
    keeper = ScheduleKeeper(engine, str(engine.url))
    keeper.start()
    try:
        assert keeper.scheduler is not None
        job = keeper.scheduler.get_job(job_id(task.id or 0))
        assert job is not None and job.name != stamp.isoformat()
        assert "mon,tue,wed,thu,fri" in str(job.trigger)
    finally:
        keeper.stop()


def test_a_schedule_that_cannot_be_built_stops_no_other(engine: Engine) -> None:
    # A schedule stored before a check refused it (APScheduler alone read "mon#1" as
    # "mon"), or whose zone left the tz data, must not keep every other from firing.
    with session_scope(engine) as session:
        broken, _ = create_task(session, TaskCreate(name="old", schedule={"cron": "0 6 * * 1"}))
        fine, _ = create_task(session, TaskCreate(name="tick", schedule={"every_s": 60}))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE tasks SET schedule = :s WHERE id = :id"),
            {"s": '{"cron": "0 6 * * mon#1", "timezone": "UTC"}', "id": broken.id},
        )
    keeper = ScheduleKeeper(engine, str(engine.url))
    keeper.start()
    try:
        assert keeper.scheduler is not None
        assert keeper.scheduler.get_job(job_id(fine.id or 0)) is not None
        assert keeper.scheduler.get_job(job_id(broken.id or 0)) is None
        assert keeper.sync_changes() == 0  # not tried again on every pass
    finally:
        keeper.stop()


def test_a_deleted_tasks_job_is_dropped_at_its_next_fire(engine: Engine, keeper) -> None:
    # The keeper follows schedule changes; a deleted task leaves none behind, so its
    # job stayed and fired (a database read each time) until the controller restarted.
    task = _ticking_with_its_job(engine, keeper, 1)
    with session_scope(engine) as session:
        delete_task(session, task.id or 0)
    lease = Lease(engine, "this controller", 60)
    assert lease.try_acquire()
    context = FireContext(engine, None, lease, forget=keeper.forget)
    register(keeper.key, context)
    try:
        fire_scheduled(keeper.key, task.id or 0)  # what the job runs
    finally:
        unregister(keeper.key, context)
    assert keeper.scheduler.get_job(job_id(task.id or 0)) is None


def test_a_start_that_fails_leaves_no_scheduler_behind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lease holder retries the start every tick while the database fails it; each
    # failed try left a paused scheduler (a thread) behind.
    keeper = ScheduleKeeper(engine, str(engine.url))

    def database_gone() -> int:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(keeper, "sync_all", database_gone)
    before = threading.active_count()
    for _ in range(3):
        with pytest.raises(OperationalError):
            keeper.start()
    assert keeper.scheduler is None
    assert threading.active_count() == before
