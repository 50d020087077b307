"""POST /api/v1/tasks/batch: many tasks in one request and one transaction, all or none;
an error names the item; a keyed batch replays as a whole and its key holds no other
batch; site grants hold per item."""

from __future__ import annotations

from typing import Any

from api_helpers import assert_error
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.store.models import Outbox, Task
from tme.schemas import MAX_BATCH_TASKS

URL = "/api/v1/tasks/batch"


def _write(i: int, site: str = "plant-1") -> dict[str, Any]:
    return {
        "name": f"set pump speed {i}",
        "op": "modbus.write",
        "target": {"site": site, "agent": "skid-a", "device": "pump1"},
        "params": {"point": "speed_setpoint", "value": 1000 + i},
    }


def _task_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Task)).one())


def test_a_batch_creates_its_tasks_in_order(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    answer = test_client.post(URL, json={"tasks": [_write(i) for i in range(3)]})
    assert answer.status_code == 201, answer.text
    tasks = answer.json()["tasks"]
    assert [t["name"] for t in tasks] == [f"set pump speed {i}" for i in range(3)]
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks)
    assert {t["status"] for t in tasks} == {"queued"}  # each run went on to the outbox
    with Session(app_engine) as session:
        assert session.exec(select(func.count()).select_from(Outbox)).one() == 3


def test_a_bad_item_is_named_and_nothing_is_stored(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    missing = {**_write(2), "depends_on": [{"task": 999_999, "on": "success"}]}
    answer = test_client.post(URL, json={"tasks": [_write(0), _write(1), missing]})
    assert_error(answer, 422, "tasks.2", "does not exist")
    invalid = {**_write(1), "params": {"point": "speed_setpoint"}}  # no value to write
    answer = test_client.post(URL, json={"tasks": [_write(0), invalid]})
    error = assert_error(answer, 422, "tasks.1")
    assert error["details"][0]["field"].startswith("tasks.1."), error
    assert _task_count(app_engine) == 0


def test_empty_and_oversized_batches_are_refused(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    assert test_client.post(URL, json={"tasks": []}).status_code == 422
    many = {"tasks": [_write(i) for i in range(MAX_BATCH_TASKS + 1)]}
    assert test_client.post(URL, json=many).status_code == 422
    assert _task_count(app_engine) == 0


def test_a_keyed_batch_replays_as_a_whole(test_client) -> None:  # type: ignore[no-untyped-def]
    body = {"tasks": [_write(0), _write(1)]}
    headers = {"Idempotency-Key": "nightly-setpoints"}
    first = test_client.post(URL, json=body, headers=headers)
    again = test_client.post(URL, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert [t["id"] for t in again.json()["tasks"]] == [t["id"] for t in first.json()["tasks"]]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    changed = {"tasks": [_write(0), _write(5)]}
    conflict = test_client.post(URL, json=changed, headers=headers)
    assert assert_error(conflict, 409, "tasks.1")["details"]["index"] == 1


def test_a_batch_key_stands_for_the_whole_batch(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    """A longer or shorter batch, or a single task, under a batch's key is refused and
    creates nothing: the items' own keys would have let the extra ones in."""
    headers = {"Idempotency-Key": "morning-setpoints"}
    body = {"tasks": [_write(0), _write(1)]}
    assert test_client.post(URL, json=body, headers=headers).status_code == 201
    longer = {"tasks": [_write(0), _write(1), _write(2)]}
    assert_error(test_client.post(URL, json=longer, headers=headers), 409, "different batch")
    shorter = {"tasks": [_write(0)]}
    assert_error(test_client.post(URL, json=shorter, headers=headers), 409, "different batch")
    single = test_client.post("/api/v1/tasks", json=_write(0), headers=headers)
    assert_error(single, 409, "different request body")
    assert _task_count(app_engine) == 2
    again = test_client.post(URL, json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"


def test_an_item_outside_the_callers_sites_refuses_the_batch(app, app_engine) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app_engine, "olga", "operator", ["plant-1"])
    with TestClient(app, headers={"Authorization": f"Bearer {creds.token}"}) as client:
        body = {"tasks": [_write(0), _write(1, site="plant-2")]}
        answer = client.post(URL, json=body)
        assert answer.status_code in (403, 404), answer.text
        assert answer.json()["error"]["details"]["index"] == 1
        assert _task_count(app_engine) == 0
        assert client.post(URL, json={"tasks": [_write(0)]}).status_code == 201
