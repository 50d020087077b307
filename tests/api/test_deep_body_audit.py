"""A deeply nested request body to a change route: the 400 is answered, the change is
still audited (its fields unread), and nothing is logged as an application error (the
audit's body summary used to raise RecursionError after the answer was sent)."""

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
