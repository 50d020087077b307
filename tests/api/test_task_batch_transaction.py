"""POST /api/v1/tasks/batch stores its tasks in one commit, and each task starts as the
single create starts it (status, a queued run); a failing item leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import row_counts
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import UOWTransaction

from tme.controller.store.models import Task

URL = "/api/v1/tasks/batch"


def _write(i: int) -> dict[str, Any]:
    return {
        "name": f"set pump speed {i}",
        "op": "modbus.write",
        "target": {"site": "plant-1", "agent": "skid-a", "device": "pump1"},
        "params": {"point": "speed_setpoint", "value": 1000 + i},
    }


@pytest.fixture
def task_commits() -> Iterator[list[int]]:
    """For each commit that stored new tasks, how many it stored."""
    pending: dict[int, int] = {}
    commits: list[int] = []

    def after_flush(session: OrmSession, _flush: UOWTransaction) -> None:
        added = sum(isinstance(obj, Task) for obj in session.new)
        if added:
            pending[id(session)] = pending.get(id(session), 0) + added

    def after_commit(session: OrmSession) -> None:
        if id(session) in pending:
            commits.append(pending.pop(id(session)))

    def after_rollback(session: OrmSession) -> None:
        # What a rolled-back transaction flushed was never stored; forgetting it also
        # keeps a later session that reuses this one's id() from inheriting it.
        pending.pop(id(session), None)

    listeners = [
        ("after_flush", after_flush),
        ("after_commit", after_commit),
        ("after_rollback", after_rollback),
    ]
    for name, listener in listeners:
        event.listen(OrmSession, name, listener)
    try:
        yield commits
    finally:
        for name, listener in listeners:
            event.remove(OrmSession, name, listener)


def test_three_tasks_are_stored_by_one_commit(test_client, task_commits) -> None:  # type: ignore[no-untyped-def]
    answer = test_client.post(URL, json={"tasks": [_write(i) for i in range(3)]})
    assert answer.status_code == 201, answer.text
    assert task_commits == [3]


def test_each_task_starts_as_a_single_create_starts_it(test_client) -> None:  # type: ignore[no-untyped-def]
    single = test_client.post("/api/v1/tasks", json=_write(9)).json()
    batch = test_client.post(URL, json={"tasks": [_write(i) for i in range(3)]}).json()["tasks"]
    assert single["status"] == "queued"
    for i, task in enumerate(batch):
        assert task["status"] == single["status"] and task["latest_run_id"], task
        stored = test_client.get(f"/api/v1/tasks/{task['id']}").json()
        assert stored["params"]["value"] == 1000 + i
        runs = test_client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"]
        assert [r["id"] for r in runs] == [task["latest_run_id"]]  # one run, on its way


def test_an_invalid_third_item_leaves_nothing(test_client, app_engine, task_commits) -> None:  # type: ignore[no-untyped-def]
    before = row_counts(app_engine)
    bad = {**_write(2), "depends_on": [{"task": 123_456, "on": "success"}]}
    answer = test_client.post(URL, json={"tasks": [_write(0), _write(1), bad]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith("tasks.2: "), error
    assert [e["field"] for e in error["details"]] == ["tasks.2.depends_on.0.task"], error
    assert row_counts(app_engine) == before
    assert task_commits == []
