"""The audit log records changes with who, what and where, and its chain catches tampering."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select
from typer.testing import CliRunner

from tme.cli.audit_cmd import app as audit_cli
from tme.controller.services.audit import verify_chain
from tme.controller.store.db import session_scope
from tme.controller.store.security_models import AuditEntry


def _changes(test_client: TestClient) -> int:
    task = test_client.post("/api/v1/tasks", json={"name": "audited"}).json()
    test_client.put(f"/task/{task['id']}/", json={"status": "started"})
    test_client.patch(f"/api/v1/tasks/{task['id']}", json={"description": "changed"})
    test_client.delete(f"/api/v1/tasks/{task['id']}")
    return int(task["id"])


def test_changes_are_recorded_with_who_what_where(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    task_id = _changes(test_client)
    with session_scope(app_engine) as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()  # type: ignore[arg-type]
    changes = [r for r in rows if r.action.startswith("task.write")]
    assert [r.target.split()[0] for r in changes] == ["POST", "PUT", "PATCH", "DELETE"]
    assert all(r.actor == "admin" and r.client and r.outcome == "ok" for r in changes)
    assert changes[0].details["location"] == f"/api/v1/tasks/{task_id}"
    assert changes[1].details["reported_status"] == "started"
    assert changes[2].details["fields"] == ["description"]


def test_api_lists_filters_and_exports_csv(test_client, make_token) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    page = test_client.get("/api/v1/audit", params={"action": "task.write", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_before_id"]
    assert all(i["action"].startswith("task.write") for i in page["items"])
    for url, params in (
        ("/api/v1/audit.csv", {"actor": "admin"}),
        ("/api/v1/audit", {"actor": "admin", "format": "csv"}),
    ):
        response = test_client.get(url, params=params)
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) >= 4 and {r["actor"] for r in rows} == {"admin"}
    engineer = {"Authorization": f"Bearer {make_token('engineer')}"}
    assert test_client.get("/api/v1/audit", headers=engineer).status_code == 403


def test_edited_row_is_detected(test_client, app_engine, app_settings) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    with session_scope(app_engine) as session:
        assert verify_chain(session)[1] == []
    runner = CliRunner()
    db = ["verify", "--db", app_settings.database.url]
    assert runner.invoke(audit_cli, db).exit_code == 0
    with app_engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'someone' WHERE id = 2"))
    with session_scope(app_engine) as session:
        problems = verify_chain(session)[1]
    assert [(p.entry_id, "edited" in p.problem) for p in problems] == [(2, True)]
    result = runner.invoke(audit_cli, db)
    assert result.exit_code == 1 and "row 2" in result.output


def test_removed_row_is_detected(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = 3"))
    with session_scope(app_engine) as session:
        problems = verify_chain(session)[1]
    assert [(p.entry_id, "missing" in p.problem) for p in problems] == [(4, True)]
