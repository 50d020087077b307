"""Creating many tasks in one transaction: every item is checked first, the tasks are
flushed together for their ids, and each table's rows go in one statement, however
many tasks there are; the rows are those the run-ready hook writes one object at a
time; a replayed idempotency key returns the stored task."""

from __future__ import annotations

import threading

import msgspec
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.tasks import create_tasks, to_public
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Task, TaskDependency
from tme.controller.store.workflow_models import TaskPolicy
from tme.errors import ValidationError
from tme.protocol import Command
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


def _statements_creating(engine: Engine, count: int) -> list[str]:
    """The statements of one call creating `count` tasks, as verb and table."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            seen.append(f"{verb} {words[2] if verb != 'UPDATE' else words[1]}")

    hook = RunReady(Settings(), threading.Event())
    with session_scope(engine) as session:
        event.listen(engine, "before_cursor_execute", note)
        try:
            made = create_tasks(session, [_write(i) for i in range(count)], on_run_ready=hook)
            session.flush()
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert [created for _task, created in made] == [True] * count
    return seen


def test_the_rows_of_a_call_go_in_one_statement_per_table_however_many(engine: Engine) -> None:
    """Policies, runs, hops, links and commands: one INSERT each for 2 tasks or 20, and
    no UPDATE: a task's INSERT carries its first run and status. (The tasks' INSERT is
    one statement where the dialect returns ids in bulk, as PostgreSQL does; SQLite
    returns them one row at a time.)"""
    few, many = _statements_creating(engine, 2), _statements_creating(engine, 20)
    dependents = [s for s in few if s != "INSERT tasks"]
    assert dependents == [s for s in many if s != "INSERT tasks"]
    assert sorted(dependents) == sorted(
        f"INSERT {t}" for t in ("task_policies", "runs", "run_events", "run_links", "outbox")
    )
    assert set(few) - set(dependents) == {"INSERT tasks"}
    with session_scope(engine) as session:
        queued = session.exec(select(func.count()).select_from(Outbox)).one()
        statuses = set(session.exec(select(Task.status)))
    assert queued == 22 and statuses == {"queued"}  # every run went on to the outbox


def _rows_of_one_task(engine: Engine, hook: object, key: str) -> dict[str, list[dict[str, object]]]:
    """What creating one task stored, without ids, times and the run id; under "writes",
    whether the task was written twice (the one-object path updates it with its run)."""
    writes: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        writes.append(" ".join(statement.split()[:2]))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope(engine) as session:
            ((task, _),) = create_tasks(
                session,
                [_write(1)],
                idempotency_keys=[key],
                on_run_ready=hook,  # type: ignore[arg-type]
            )
            task_id, run_id = task.id, task.latest_run_id
    finally:
        event.remove(engine, "before_cursor_execute", note)
    volatile = {
        *("id", "task_id", "run_id", "latest_run_id", "workflow_id", "first_run_id", "key"),
        *("at", "created_at", "updated_at", "not_after", "schedule_changed_at"),
    }
    wanted = {
        "tasks": f"SELECT * FROM tasks WHERE id = {task_id}",
        "task_policies": f"SELECT * FROM task_policies WHERE task_id = {task_id}",
        "idempotency_keys": f"SELECT * FROM idempotency_keys WHERE task_id = {task_id}",
        "runs": f"SELECT * FROM runs WHERE task_id = {task_id}",
        "run_events": f"SELECT * FROM run_events WHERE run_id = '{run_id}' ORDER BY id",
        "run_links": f"SELECT * FROM run_links WHERE run_id = '{run_id}'",
        "outbox": f"SELECT site, attempts, published_at FROM outbox WHERE run_id = '{run_id}'",
    }
    rows: dict[str, list[dict[str, object]]] = {}
    with engine.connect() as connection:
        for table, query in wanted.items():
            found = connection.execute(text(query)).mappings().all()
            rows[table] = [{k: v for k, v in r.items() if k not in volatile} for r in found]
        body = connection.execute(
            text(f"SELECT body FROM outbox WHERE run_id = '{run_id}'")
        ).scalar_one()
    command = Command.from_json(body.encode())
    assert (command.id, command.task_id) == (run_id, task_id)
    rows["command"] = [{k: v for k, v in msgspec.structs.asdict(command).items()
                        if k not in ("id", "task_id", "not_after", "created_at")}]  # fmt: skip
    for table in ("runs", "run_links"):
        assert rows[table], f"no {table} row"
    rows["writes"] = [{"task updated": "UPDATE tasks" in writes}]
    return rows


def test_a_task_started_in_a_batch_stores_what_one_started_object_by_object_does(
    engine: Engine,
) -> None:
    """The batch path (rows built before the first write) and the run-ready hook called
    on ORM objects store the same rows for the same request, and both wake the
    dispatcher once the transaction committed."""
    batched = RunReady(Settings(), threading.Event())
    one_by_one = RunReady(Settings(), threading.Event())

    def hook(session: object, run: object, task: object) -> None:  # a plain hook
        one_by_one(session, run, task)  # type: ignore[arg-type]

    from_batch = _rows_of_one_task(engine, batched, "k-batch")
    from_objects = _rows_of_one_task(engine, hook, "k-orm")
    assert from_batch.pop("writes") == [{"task updated": False}]  # the batch path ran
    assert from_objects.pop("writes") == [{"task updated": True}]
    assert from_batch == from_objects
    assert batched.wake.is_set() and one_by_one.wake.is_set()


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


def test_new_tasks_read_back_without_a_query(engine: Engine) -> None:
    """A created task's public form (with its policy) comes from what the transaction
    wrote: reading back a batch of new tasks costs no query per task."""
    hook = RunReady(Settings(), threading.Event())
    statements: list[str] = []
    with session_scope(engine) as session:
        made = create_tasks(session, [_write(i) for i in range(5)], on_run_ready=hook)
        session.commit()

        def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        try:
            public = [to_public(task) for task, _created in made]
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert statements == []
    assert [p.status for p in public] == ["queued"] * 5


def test_a_call_mixing_dependent_and_plain_tasks_stores_both(engine: Engine) -> None:
    """A task with dependencies is stored after the flush with its edge; the plain
    tasks of the same call go through the batch; each gets its own policy."""
    hook = RunReady(Settings(), threading.Event())
    with session_scope(engine) as session:
        ((first, _),) = create_tasks(session, [_write(0)], on_run_ready=hook)
        first_id = first.id
    dependent = TaskCreate.model_validate(
        {**_write(1).model_dump(), "depends_on": [{"task": first_id, "on": "success"}]}
    )
    with session_scope(engine) as session:
        made = create_tasks(session, [_write(2), dependent, _write(3)], on_run_ready=hook)
        ids = [task.id for task, _ in made]
    with session_scope(engine) as session:
        statuses = [session.get(Task, i).status for i in ids]  # type: ignore[union-attr]
        edges = session.exec(select(TaskDependency.task_id, TaskDependency.predecessor_id)).all()
        policies = session.exec(
            select(func.count()).select_from(TaskPolicy).where(col(TaskPolicy.task_id).in_(ids))
        ).one()
    assert statuses == ["queued", "idle", "queued"]  # the dependent waits for its predecessor
    assert edges == [(ids[1], first_id)] and policies == 3
