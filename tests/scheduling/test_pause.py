"""A paused task starts on its own in no way: not by its schedule (test_slots), its
trigger or its dependencies; only by hand ("run now"). Resume restores all of them."""

from __future__ import annotations

from typing import Any

from workflow_api import after, fire, make, report, wait_for_step


def pause(client: Any, task: dict[str, Any], action: str = "pause") -> None:
    answer = client.post(f"/api/v1/tasks/{task['id']}/{action}")
    assert answer.status_code == 200, answer.text  # a task without a schedule too
    assert answer.json()["paused"] is (action == "pause")


def test_a_paused_task_is_started_by_neither_its_trigger_nor_its_dependencies(
    test_client,
) -> None:
    batch = make(test_client, "batch", trigger="batch")
    flush = make(test_client, "flush", trigger="shift", **after(batch))
    rinse = make(test_client, "rinse", **after(flush))
    light = make(test_client, "light", trigger="shift")
    pause(test_client, flush)
    # Its trigger: recorded and answered as a skipped run; a task bound beside it starts.
    fired = test_client.post("/api/v1/triggers/shift").json()["runs"]
    assert [(r["task_id"], r["state"]) for r in fired] == [
        (flush["id"], "skipped"),
        (light["id"], "pending"),
    ]
    assert fired[0]["reason"] == "trigger shift: skipped, task paused"
    # Its dependency: the step is skipped, and its own dependents follow the skip.
    workflow = fire(test_client, "batch")
    report(test_client, batch, "complete")
    step = wait_for_step(test_client, workflow, flush, "skipped")
    assert step["reason"].endswith(": skipped, task paused")
    wait_for_step(test_client, workflow, rinse, "skipped")
    # By hand it still runs.
    now = test_client.post(f"/api/v1/tasks/{flush['id']}/run")
    assert now.status_code == 201 and now.json()["state"] == "pending"


def test_resume_lets_its_trigger_and_dependencies_start_it_again(test_client) -> None:
    batch = make(test_client, "batch", trigger="batch")
    flush = make(test_client, "flush", trigger="shift", **after(batch))
    pause(test_client, flush)
    pause(test_client, flush, "resume")
    fired = test_client.post("/api/v1/triggers/shift").json()["runs"]
    assert [r["state"] for r in fired] == ["pending"]
    report(test_client, flush, "complete")
    workflow = fire(test_client, "batch")
    report(test_client, batch, "complete")
    wait_for_step(test_client, workflow, flush, "pending")
