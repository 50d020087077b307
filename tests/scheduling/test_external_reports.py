"""An external task's status reports (`PATCH /api/v1/tasks/<id>` with `status`) while it
has several runs: one in progress and others behind it in the overlap queue, a retry
waiting for its time, or runs side by side (overlap allow).

A report is about the run whoever does the task is working on: the oldest one it can
move on, never one waiting in the overlap queue. It went to the task's latest run,
which is the newest one: the run queued behind was completed and the one in progress
stayed pending for ever. And a run released from the overlap queue (or a retry whose
time came) stayed `waiting`, as though still held; now it is `queued`, ready for its
reporter, as a machine task's run then is.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from waiting import wait_until
from workflow_api import after, fire, make, report, wait_for_step


def _run_now(client: TestClient, task: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/api/v1/tasks/{task['id']}/run")
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _state(client: TestClient, run: dict[str, Any]) -> str:
    return str(client.get(f"/api/v1/runs/{run['id']}").json()["state"])


def _reaches(client: TestClient, run: dict[str, Any], state: str) -> None:
    wait_until(lambda: _state(client, run) == state, what=f"run {run['id']} {state}")


def test_a_run_released_from_the_overlap_queue_is_queued_and_takes_the_next_reports(
    test_client: TestClient,
) -> None:
    task = make(test_client, "sign off", trigger="batch-done", overlap={"policy": "queue"})
    first, second = _run_now(test_client, task), _run_now(test_client, task)
    assert (first["state"], second["state"]) == ("pending", "waiting")
    report(test_client, task, "started")
    assert (_state(test_client, first), _state(test_client, second)) == ("running", "waiting")
    report(test_client, task, "complete")
    assert _state(test_client, first) == "succeeded"
    _reaches(test_client, second, "queued")
    report(test_client, task, "started")
    assert _state(test_client, second) == "running"
    report(test_client, task, "complete")
    assert _state(test_client, second) == "succeeded"


def test_a_report_before_the_queue_moves_on_goes_to_the_next_run_in_it(
    test_client: TestClient,
) -> None:
    """The run in progress finished; the workflow pass has not released the next yet
    (or the reporter is quicker): the report is about the oldest run held, not the
    newest, and releases it."""
    task = make(test_client, "sign off", trigger="batch-done", overlap={"policy": "queue"})
    first = _run_now(test_client, task)
    second, third = _run_now(test_client, task), _run_now(test_client, task)
    report(test_client, task, "complete")
    report(test_client, task, "complete")
    states = [_state(test_client, run) for run in (first, second, third)]
    assert states[:2] == ["succeeded", "succeeded"] and states[2] in ("waiting", "queued")
    _reaches(test_client, third, "queued")


def test_a_workflow_step_released_from_the_overlap_queue_is_queued(
    test_client: TestClient,
) -> None:
    batch = make(test_client, "batch", trigger="batch")
    check = make(test_client, "check", overlap={"policy": "queue"}, **after(batch))
    first = fire(test_client, "batch")
    report(test_client, batch, "complete")
    in_progress = wait_for_step(test_client, first, check, "pending")
    second = fire(test_client, "batch")
    report(test_client, batch, "complete")
    held = wait_for_step(test_client, second, check, "waiting")
    report(test_client, check, "complete")
    assert _state(test_client, in_progress) == "succeeded"
    released = wait_for_step(test_client, second, check, "queued")
    assert released["id"] == held["id"]
    report(test_client, check, "fail")
    assert _state(test_client, released) == "failed"


def test_an_external_retry_whose_time_came_is_queued(test_client: TestClient) -> None:
    task = make(test_client, "sign off", trigger="go", retries={"max": 1, "backoff_s": 0})
    first = _run_now(test_client, task)
    report(test_client, task, "fail")
    assert _state(test_client, first) == "failed"

    def retry() -> dict[str, Any] | None:
        runs = test_client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"]
        return runs[0] if runs[0]["id"] != first["id"] else None

    planned = wait_until(retry, what="the retry planned")
    assert isinstance(planned, dict)
    _reaches(test_client, planned, "queued")
    report(test_client, task, "complete")
    assert _state(test_client, planned) == "succeeded"


def test_runs_side_by_side_are_reported_oldest_first(test_client: TestClient) -> None:
    """Overlap allow: each report moves the oldest run it can; the second `complete`
    was refused (409), the newest run being final already and the oldest left pending."""
    task = make(test_client, "sign off", trigger="go", overlap={"policy": "allow", "max": 2})
    first, second = _run_now(test_client, task), _run_now(test_client, task)
    report(test_client, task, "started")
    report(test_client, task, "started")
    assert (_state(test_client, first), _state(test_client, second)) == ("running", "running")
    report(test_client, task, "complete")
    assert (_state(test_client, first), _state(test_client, second)) == ("succeeded", "running")
    report(test_client, task, "fail")
    assert _state(test_client, second) == "failed"
