"""A principal scoped to sites cannot make its tasks depend on a task of another site:
the predecessor is answered as one that does not exist, on create, batch and patch."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from security_helpers import SITE_A, SITE_B, create_task


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def test_create_refuses_a_predecessor_of_another_site(anonymous: TestClient, make_token) -> None:  # type: ignore[no-untyped-def]
    admin = bearer(make_token("admin"))
    operator = bearer(make_token("operator", SITE_A))
    hidden = create_task(anonymous, admin, SITE_B)["id"]
    before = anonymous.get("/api/v1/tasks", headers=admin).json()["items"]

    body = {"name": "after b", "target": {"site": SITE_A}, "depends_on": [{"task": hidden}]}
    error = _error(anonymous.post("/api/v1/tasks", json=body, headers=operator), 422)
    missing = {**body, "depends_on": [{"task": 2**62}]}
    absent = _error(anonymous.post("/api/v1/tasks", json=missing, headers=operator), 422)
    # the same answer as for a task that does not exist: no oracle for other sites' ids
    assert error["message"] == absent["message"].replace(str(2**62), str(hidden))
    assert error["details"] == [
        {
            "field": "depends_on.0.task",
            "message": f"task {hidden} does not exist",
            "type": "value_error",
        }
    ]

    batch = {"tasks": [{"name": "fine", "target": {"site": SITE_A}}, body]}
    error = _error(anonymous.post("/api/v1/tasks/batch", json=batch, headers=operator), 422)
    assert error["message"].startswith("tasks.1: invalid dependencies")
    assert error["details"][0]["field"] == "tasks.1.depends_on.0.task"

    # nothing was stored, and the other site's task stays free to delete
    assert anonymous.get("/api/v1/tasks", headers=admin).json()["items"] == before
    assert anonymous.delete(f"/api/v1/tasks/{hidden}", headers=admin).status_code == 204


def test_patch_refuses_a_predecessor_of_another_site(anonymous: TestClient, make_token) -> None:  # type: ignore[no-untyped-def]
    admin = bearer(make_token("admin"))
    operator = bearer(make_token("operator", SITE_A))
    hidden = create_task(anonymous, admin, SITE_B)["id"]
    visible = create_task(anonymous, admin, SITE_A)["id"]
    mine = create_task(anonymous, operator, SITE_A)
    url = f"/api/v1/tasks/{mine['id']}"

    change = {"depends_on": [{"task": visible}, {"task": hidden}]}
    error = _error(anonymous.patch(url, json=change, headers=operator), 422)
    assert error["details"][0]["field"] == "depends_on.1.task"
    assert f"task {hidden} does not exist" in error["message"]
    assert anonymous.get(url, headers=operator).json() == mine

    # a predecessor of a granted site is still fine, and an all-sites user may link any
    ok = anonymous.patch(url, json={"depends_on": [{"task": visible}]}, headers=operator)
    assert ok.status_code == 200, ok.text
    # (visible follows hidden first: a join of two tasks each started on its own is
    # refused for everyone, as no workflow run would reach both)
    follow = {"depends_on": [{"task": hidden}]}
    assert anonymous.patch(f"/api/v1/tasks/{visible}", json=follow, headers=admin).is_success
    assert anonymous.patch(url, json=change, headers=admin).status_code == 200
