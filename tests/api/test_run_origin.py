"""Every run the API answers says which workflow run it belongs to and why it exists
(`workflow_id`, `cause`), as docs/workflows.md promises: one run in full, a task's
runs, a workflow run's runs, and what run now, a trigger and a retry answer."""

from __future__ import annotations

from typing import Any

from waiting import wait_until


def _make(client: Any, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _runs(client: Any, task: dict[str, Any]) -> list[dict[str, Any]]:
    return list(client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"])


def _origin(run: dict[str, Any]) -> tuple[Any, Any]:
    return run["workflow_id"], run["cause"]


def _shown(client: Any, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _says(client: Any, run: dict[str, Any], workflow_id: str, cause: str) -> None:
    """The run as answered, and its detail, name that workflow run and cause."""
    assert _origin(run) == (workflow_id, cause)
    assert _origin(_shown(client, run["id"])) == (workflow_id, cause)


def test_a_triggered_run_and_its_dependent_name_their_workflow_run(test_client) -> None:
    batch = _make(test_client, "batch", trigger="batch")
    flush = _make(test_client, "flush", depends_on=[{"task": batch["id"], "on": "success"}])
    alarm = _make(test_client, "alarm", depends_on=[{"task": batch["id"], "on": "failure"}])
    fired = test_client.post("/api/v1/triggers/batch").json()["runs"]
    assert len(fired) == 1
    first = fired[0]["id"]
    _says(test_client, fired[0], first, "trigger")

    reported = test_client.patch(f"/api/v1/tasks/{batch['id']}", json={"status": "complete"})
    assert reported.status_code == 200, reported.text
    wait_until(lambda: _runs(test_client, flush), what="the dependent's run")
    wait_until(lambda: _runs(test_client, alarm), what="the other branch skipped")
    step = _runs(test_client, flush)[0]
    _says(test_client, step, first, "dependency")
    workflow = test_client.get(f"/api/v1/workflows/{first}").json()
    assert {(r["task_id"], r["state"], r["cause"]) for r in workflow} == {
        (batch["id"], "succeeded", "trigger"),
        (flush["id"], "pending", "dependency"),
        (alarm["id"], "skipped", "dependency"),
    }
    assert {r["workflow_id"] for r in workflow} == {first}


def test_a_created_run_a_retry_and_run_now_say_why_they_exist(test_client) -> None:
    task = _make(test_client, "plain")
    created = _runs(test_client, task)
    assert len(created) == 1
    first = created[0]["id"]
    _says(test_client, created[0], first, "created")

    reported = test_client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "fail"})
    assert reported.status_code == 200, reported.text
    retry = test_client.post(f"/api/v1/runs/{first}/retry")
    assert retry.status_code == 201, retry.text
    _says(test_client, retry.json(), first, "retry")

    canceled = test_client.post(f"/api/v1/runs/{retry.json()['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert _origin(canceled.json()) == (first, "retry")
    now = test_client.post(f"/api/v1/tasks/{task['id']}/run")
    assert now.status_code == 201, now.text
    assert _origin(now.json()) == (now.json()["id"], "manual")
