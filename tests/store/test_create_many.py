"""Creating many tasks in one transaction: every item is checked first, the tasks are
flushed together for their ids, and each table's rows go in one statement per flush,
however many tasks there are; a replayed idempotency key returns the stored task."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Task
from tme.errors import ValidationError
from tme.schemas import TaskCreate


def _write(i: int, site: str = "plant-1") -> TaskCreate:
    return TaskCreate.model_validate(
        {
            "name": f"set pump speed {i}",
            "op": "modbus.write",
            "target": {"site": site, "agent": "skid-a", "device": "pump1"},
            "params": {"point": "speed_setpoint", "value": 1000 + i},
        }
    )


def _flushes_creating(engine: Engine, count: int) -> int:
    flushes: list[object] = []
    hook = RunReady(Settings(), threading.Event())
    with session_scope(engine) as session:
        event.listen(session, "after_flush", lambda s, _ctx: flushes.append(s))
        made = create_tasks(session, [_write(i) for i in range(count)], on_run_ready=hook)
    assert [created for _task, created in made] == [True] * count
    return len(flushes)


def test_the_tasks_of_a_call_are_flushed_together_however_many(engine: Engine) -> None:
    """One flush for the tasks' ids and one at commit: each table's rows in one go
    (one statement where the dialect returns ids in bulk, as PostgreSQL does)."""
    assert _flushes_creating(engine, 2) == _flushes_creating(engine, 20) == 2
    with session_scope(engine) as session:
        queued = session.exec(select(func.count()).select_from(Outbox)).one()
        statuses = set(session.exec(select(Task.status)))
    assert queued == 22 and statuses == {"queued"}  # every run went on to the outbox


def test_a_bad_item_fails_the_call_before_its_task_is_added(engine: Engine) -> None:
    fields = {**_write(3).model_dump(), "depends_on": [{"task": 999_999, "on": "success"}]}
    bad = TaskCreate.model_validate(fields)
    with pytest.raises(ValidationError, match="does not exist"), session_scope(engine) as session:
        create_tasks(session, [_write(1), _write(2), bad])
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(Task)).one() == 0


def test_replayed_keys_return_the_stored_tasks_beside_new_ones(engine: Engine) -> None:
    with session_scope(engine) as session:
        ((first, _),) = create_tasks(session, [_write(1)], idempotency_keys=["k-1"])
        first_id = first.id
    with session_scope(engine) as session:
        made = create_tasks(session, [_write(1), _write(2)], idempotency_keys=["k-1", "k-2"])
        assert [(t.id == first_id, created) for t, created in made] == [
            (True, False),
            (False, True),
        ]
    with session_scope(engine) as session:
        names = list(session.exec(select(Task.name).order_by(col(Task.id))))
    assert names == ["set pump speed 1", "set pump speed 2"]
