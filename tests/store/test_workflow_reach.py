"""Joins no workflow run can complete: a workflow run reaches only the tasks downstream
of the task that started it, so a task joining tasks started on their own would wait
for ever. Creating one, or changing dependencies so an existing one becomes one, is
refused naming the tasks; one stored before the check (or a workflow run started
half-way by "run now") records the dependent's run as skipped, with the reason."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, TaskDependency
from tme.controller.workflow import settle_pending
from tme.errors import ValidationError
from tme.schemas import TaskCreate, TaskUpdate


def _create(engine: Engine, name: str, *after: int, **fields: object) -> int:
    deps = [{"task": t, "on": "success"} for t in after]
    data = TaskCreate.model_validate({"name": name, "depends_on": deps, **fields})
    with session_scope(engine) as session:
        task, _ = service.create_task(session, data)
        return task.id or 0


def _patch(engine: Engine, task_id: int, *after: int) -> None:
    update = TaskUpdate(depends_on=[{"task": t} for t in after])
    with session_scope(engine) as session:
        service.update_task(session, task_id, update)


def _runs(engine: Engine, task_id: int) -> list[tuple[str, str]]:
    with session_scope(engine) as session:
        query = select(Run).where(Run.task_id == task_id).order_by(col(Run.created_at))
        return [(r.state, r.reason) for r in session.exec(query)]


def _report(engine: Engine, task_id: int, status: str) -> None:
    with session_scope(engine) as session:
        service.update_task(session, task_id, TaskUpdate(status=status))  # type: ignore[arg-type]
    with session_scope(engine) as session:
        settle_pending(session, None)


def test_a_join_of_tasks_started_on_their_own_is_refused(engine: Engine) -> None:
    a = _create(engine, "batch", trigger="batch")
    b = _create(engine, "report", trigger="report")
    with pytest.raises(ValidationError) as refused:
        _create(engine, "flush", a, b)
    message = refused.value.message
    assert f"task {a} and task {b}" in message
    assert f"make task {b} depend on task {a}" in message
    assert refused.value.field_errors[0]["field"] == "depends_on"
    _patch(engine, b, a)  # as the answer says: now one workflow run reaches both
    assert _create(engine, "flush", a, b) > 0


def test_a_longer_path_counts_and_a_shared_root_is_enough(engine: Engine) -> None:
    root = _create(engine, "root", trigger="go")
    left = _create(engine, "left", _create(engine, "mid", root))
    right = _create(engine, "right", root)
    _create(engine, "join", left, right)  # root's workflow runs reach both
    alone = _create(engine, "alone", trigger="other")
    with pytest.raises(ValidationError, match=f"task {left} and task {alone}"):
        _create(engine, "never", left, alone)


def test_a_change_upstream_that_strands_a_join_is_refused(engine: Engine) -> None:
    root = _create(engine, "root", trigger="go")
    mid = _create(engine, "mid", root)
    left, right = _create(engine, "left", mid), _create(engine, "right", root)
    join = _create(engine, "join", left, right)
    elsewhere = _create(engine, "elsewhere", trigger="other")
    for changed, deps in ((mid, []), (mid, [elsewhere]), (right, [])):
        with pytest.raises(ValidationError) as refused:
            _patch(engine, changed, *deps)
        assert f"this change to task {changed}'s dependencies" in refused.value.message
        assert f"task {join} would never start" in refused.value.message
    _patch(engine, mid, right)  # still downstream of root: allowed
    with session_scope(engine) as session:
        stored = session.exec(select(TaskDependency).where(TaskDependency.task_id == mid)).all()
        assert {e.predecessor_id for e in stored} == {right}


def test_a_stored_join_that_can_never_run_is_recorded_as_skipped(engine: Engine) -> None:
    """Graphs stored before the check: the dependent's run says why it did not run."""
    a, b = _create(engine, "batch"), _create(engine, "report")  # each started at once
    join = _create(engine, "flush", a)
    with session_scope(engine) as session:  # as an older controller let it be stored
        session.add(TaskDependency(task_id=join, predecessor_id=b, on="success"))
    _report(engine, a, "complete")
    ((state, reason),) = _runs(engine, join)
    assert state == "skipped"
    assert f"task {b} never runs in this workflow run (started by task {a})" in reason
    _report(engine, b, "complete")
    assert [s for s, _ in _runs(engine, join)] == ["skipped", "skipped"]


def test_a_workflow_run_started_half_way_skips_the_join_it_cannot_complete(
    engine: Engine,
) -> None:
    """B depends on A and the join on both: B started on its own ("run now", a report)
    starts a workflow run A never runs in, so the join is skipped, not left waiting."""
    a = _create(engine, "batch", trigger="batch")
    b = _create(engine, "check", a)
    join = _create(engine, "flush", a, b)
    _report(engine, b, "complete")  # a status report starts a run of its own
    ((state, reason),) = _runs(engine, join)
    assert state == "skipped" and f"task {a} never runs in this workflow run" in reason
