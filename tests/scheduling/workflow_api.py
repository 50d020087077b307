"""Workflow tests over the API: make tasks, report external tasks' outcomes, read runs.

External tasks stand in for machines: their outcome is reported through the API, so
each step settles exactly when the test says so.
"""

from __future__ import annotations

from typing import Any

from waiting import wait_until


def make(client: Any, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def after(task: dict[str, Any], on: str = "success") -> dict[str, Any]:
    return {"depends_on": [{"task": task["id"], "on": on}]}


def runs_of(client: Any, task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's runs, newest first."""
    return list(client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"])


def state_of(client: Any, task: dict[str, Any]) -> str | None:
    runs = runs_of(client, task)
    return runs[0]["state"] if runs else None


def report(client: Any, task: dict[str, Any], status: str) -> None:
    assert client.patch(f"/api/v1/tasks/{task['id']}", json={"status": status}).status_code == 200


def step_in(client: Any, workflow_id: str, task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's latest run in this workflow run, or None while it has none."""
    runs = client.get(f"/api/v1/workflows/{workflow_id}").json()
    steps = [r for r in runs if r["task_id"] == task["id"]]
    return steps[-1] if steps else None


def fire(client: Any, trigger: str) -> str:
    """Fire a trigger bound to one task; the workflow run it starts."""
    runs = client.post(f"/api/v1/triggers/{trigger}").json()["runs"]
    assert len(runs) == 1 and runs[0]["state"] == "pending", runs
    return str(runs[0]["id"])


def wait_for_step(
    client: Any, workflow_id: str, task: dict[str, Any], *states: str
) -> dict[str, Any]:
    """Wait until the task's step in this workflow run is in one of `states`; the step."""

    def reached() -> dict[str, Any] | None:
        step = step_in(client, workflow_id, task)
        return step if step is not None and step["state"] in states else None

    found = wait_until(reached, what=f"task {task['id']} {states} in workflow {workflow_id}")
    assert isinstance(found, dict)
    return found
