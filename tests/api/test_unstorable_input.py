"""Input the store or an answer could not hold is refused with 422 and stores nothing;
a create whose answer fails stores nothing either, and never twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from tme.controller.services import task_commit
from tme.controller.store.group_commit import by_key
from tme.controller.store.models import Task
from tme.schemas import TaskCreate

DEEP = json.loads("[" * 900 + "]" * 900)
JSON = {"Content-Type": "application/json"}


def _json(body: dict[str, Any]) -> bytes:
    """The body as a client may send it: a lone surrogate as its \\u escape."""
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"params": {"k": "\ud800"}}, ["params", "valid unicode"]),
        ({"params": {"a": DEEP}}, ["params", "nested deeper than 32"]),
        ({"schedule": {"at": "9999-12-31T23:59:59-14:00"}}, ["out of the range of dates"]),
        ({"schedule": {"at": "9500-01-01T00:00:00Z"}}, ["before 9000"]),
        ({"schedule": {"every_s": 5e-324}}, ["every_s"]),
        ({"schedule": {"cron": "0 0 30 2 *"}}, ["never fires"]),
    ],
    ids=["surrogate", "deep", "at-overflow", "at-far", "every-tiny", "cron-never"],
)
def test_unstorable_input_is_refused_and_stores_nothing(
    test_client: TestClient, counts: Callable[[], dict[str, int]], body: dict, words: list[str]
) -> None:
    """Each once answered 500 after its task was committed, and every list of tasks
    answered 500 from then on (or, for every_s and cron, was stored and never behaved
    as it said)."""
    before = counts()
    answer = test_client.post("/api/v1/tasks", content=_json({"name": "x", **body}), headers=JSON)
    assert_error(answer, 422, *words)
    assert counts() == before
    assert test_client.get("/api/v1/tasks").status_code == 200


def test_a_patch_or_a_status_report_with_unstorable_text_is_refused(
    test_client: TestClient,
) -> None:
    task_id = test_client.post("/api/v1/tasks", json={"name": "x"}).json()["id"]
    lone = _json({"params": {"x": "\ud800"}})
    patch = test_client.patch(f"/api/v1/tasks/{task_id}", content=lone, headers=JSON)
    assert_error(patch, 422, "valid unicode")
    report = test_client.put(f"/task/{task_id}/", json={"status": "started", "details": DEEP})
    assert report.status_code == 422
    assert test_client.get(f"/api/v1/tasks/{task_id}").json()["params"] == {}


def test_a_group_whose_answer_fails_commits_nothing_and_writes_each_create_once(
    app_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group that fails is written again one create at a time: had it failed after
    its commit, every other create of the group would have been stored twice."""
    publics = task_commit.to_publics

    def fails_for_bad(session: Session, tasks: list[Task]) -> Any:
        if any(task.name == "bad" for task in tasks):
            raise OverflowError("date value out of range")
        return publics(session, tasks)

    monkeypatch.setattr(task_commit, "to_publics", fails_for_bad)
    place = (app_engine, None)
    group = [(place, (TaskCreate(name=name), None, None)) for name in ("one", "bad", "two")]
    outcomes = by_key(task_commit._create_group)(group)
    assert [type(o).__name__ for o in outcomes] == ["tuple", "OverflowError", "tuple"]
    with Session(app_engine) as session:
        names = session.exec(select(Task.name).order_by(Task.id)).all()
        assert names == ["one", "two"]
        assert session.exec(select(func.count()).select_from(Task)).one() == 2


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/api/v1/tasks/batch"])
def test_an_empty_idempotency_key_is_refused(
    test_client: TestClient, counts: Callable[[], dict[str, int]], path: str
) -> None:
    """An empty key was stored as a key like any other: a client's unset variable made
    unrelated creates replay each other or collide (409)."""
    before = counts()
    body = {"tasks": [{"name": "x"}]} if path.endswith("batch") else {"name": "x"}
    answer = test_client.post(path, json=body, headers={"Idempotency-Key": ""})
    assert_error(answer, 422, "idempotency-key")
    assert counts() == before
