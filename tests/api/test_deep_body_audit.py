"""A deeply nested request body to a change route: the 400 is answered, the change is
still audited (its fields unread), and nothing is logged as an application error (the
audit's body summary used to raise RecursionError after the answer was sent); a large
one is read whole for the fields it set."""

from __future__ import annotations

import logging

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.controller.store.security_models import AuditEntry

DEPTH = 3000  # far past Python's recursion limit (1000)


def test_a_deeply_nested_body_is_refused_and_audited(
    test_client: TestClient, app_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "nested"}).json()
    target = f"PATCH /api/v1/tasks/{task['id']}"
    body = '{"a": ' * DEPTH + "1" + "}" * DEPTH
    with caplog.at_level(logging.WARNING):
        response = test_client.patch(
            f"/api/v1/tasks/{task['id']}",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert_error(response, 400)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    with Session(app_engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.target == target)).all()
    assert [(row.outcome, row.details["status"]) for row in rows] == [("failed", 400)]
    assert "fields" not in rows[0].details  # the body's fields could not be read


def test_a_change_padded_past_64_kib_is_audited_with_its_fields(
    test_client: TestClient, app_engine: Engine
) -> None:
    """A body of any size the API takes is read for the fields it set: a status report
    with a long log, or a create with large params, hid which fields it changed."""
    params = {"blob": "x" * 64_000}
    created = test_client.post(
        "/api/v1/tasks", json={"name": "padded", "description": "d" * 3000, "params": params}
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    body = {"status": "complete", "log": "x" * 100_000, "name": "renamed"}
    assert test_client.patch(f"/api/v1/tasks/{task_id}", json=body).status_code == 200
    with Session(app_engine) as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()  # type: ignore[arg-type]
    create, report = [row.details for row in rows if row.action.startswith("task.write")]
    assert create["fields"] == ["description", "name", "params"]
    assert report["fields"] == ["log", "name", "status"]
    assert report["reported_status"] == "complete"
