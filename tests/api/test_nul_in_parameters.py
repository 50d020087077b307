"""A NUL character in a query or path string answers a 422 naming the parameter,
before any route runs: SQLite's LIKE pattern ended at it (`?q=%00` listed every
task) and PostgreSQL refused it with an error that named nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient

REFUSED = {
    "task search": ("/api/v1/tasks?q=%00", "q"),
    "task search, NUL inside": ("/api/v1/tasks?status=queued&q=ab%00cd", "q"),
    "run id": ("/api/v1/runs/%00", "run_id"),
    "task id": ("/api/v1/tasks/1%00", "task_id"),
    "audit actor": ("/api/v1/audit?actor=%00", "actor"),
    "audit export action": ("/api/v1/audit.csv?action=auth%00", "action"),
    "agents site": ("/api/v1/agents?site=%00", "site"),
    "a parameter's name": ("/api/v1/tasks?q%00=x", "q\\x00"),  # as the CLI writes it
}


@pytest.mark.parametrize(("path", "name"), list(REFUSED.values()), ids=list(REFUSED))
def test_a_nul_in_a_query_or_path_string_is_refused_by_name(
    test_client: TestClient, path: str, name: str
) -> None:
    test_client.post("/api/v1/tasks", json={"name": "listed"})
    error = assert_error(test_client.get(path), 422, name, "NUL")
    assert error["code"] == "validation_error"
    assert {
        "field": name,
        "message": "must not contain a NUL character",
        "type": "value_error",
    } in (error["details"])


def test_a_change_with_a_nul_in_its_query_is_refused_before_it_runs(
    test_client: TestClient, counts: Callable[[], dict[str, int]]
) -> None:
    before = counts()
    response = test_client.post("/api/v1/tasks?note=%00", json={"name": "never made"})
    assert_error(response, 422, "note", "NUL")
    assert counts() == before


def test_an_escaped_percent_sign_is_not_a_nul(test_client: TestClient) -> None:
    test_client.post("/api/v1/tasks", json={"name": "100%00 sure"})
    found = test_client.get("/api/v1/tasks", params={"q": "%00"})
    assert found.status_code == 200, found.text
    assert [task["name"] for task in found.json()["items"]] == ["100%00 sure"]
