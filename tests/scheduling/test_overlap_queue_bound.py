"""The overlap queue is bounded: under `queue`, a start finding `max_queued` runs of
the task waiting is recorded skipped, saying so; a schedule firing faster than its runs
finish could otherwise pile waiting runs up for ever (none expires, a pause leaves them)."""

from __future__ import annotations

from waiting import wait_until


def _run_now(test_client, task_id: int) -> dict:
    answer = test_client.post(f"/api/v1/tasks/{task_id}/run")
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def test_a_start_beyond_max_queued_waiting_runs_is_skipped(test_client) -> None:
    target = {"site": "nowhere", "agent": "ghost"}  # a machine task no agent answers
    overlap = {"policy": "queue", "max_queued": 2}
    body = {"name": "flush", "op": "noop", "target": target, "overlap": overlap}
    task = test_client.post("/api/v1/tasks", json=body).json()
    first = test_client.get(f"/api/v1/tasks/{task['id']}").json()["latest_run_id"]
    waiting = [_run_now(test_client, task["id"]) for _ in range(2)]
    assert [run["state"] for run in waiting] == ["waiting", "waiting"]
    assert waiting[0]["reason"].endswith(f"waiting for run {first} to finish")
    assert waiting[1]["reason"].endswith(f"waiting for run {waiting[0]['id']} to finish")
    refused = _run_now(test_client, task["id"])
    assert refused["state"] == "skipped"
    assert refused["reason"].endswith(
        "skipped, the overlap queue is full (2 runs waiting, max_queued 2)"
    )
    # the queue moves on: once the first ends, one waiting run starts and room is made
    test_client.post(f"/api/v1/runs/{first}/cancel", params={"force": "true"})
    wait_until(
        lambda: test_client.get(f"/api/v1/runs/{waiting[0]['id']}").json()["state"] != "waiting",
        what="the oldest waiting run let go",
    )
    again = _run_now(test_client, task["id"])
    assert again["state"] == "waiting"


def test_max_queued_defaults_to_ten_and_is_bounded(test_client) -> None:
    body = {"name": "flush", "overlap": {"policy": "queue"}}
    task = test_client.post("/api/v1/tasks", json=body).json()
    assert task["overlap"]["max_queued"] == 10
    body["overlap"]["max_queued"] = 0
    refused = test_client.post("/api/v1/tasks", json=body)
    assert refused.status_code == 422
    assert "overlap.max_queued" in refused.text
