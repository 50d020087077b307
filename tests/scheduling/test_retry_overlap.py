"""A retry by hand follows its task's overlap policy as "run now" does: while another run
of the task is active it is recorded as skipped (skip, or allow with `max` active) or
waits in the overlap queue (queue), never a second run at once on one machine."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from waiting import wait_until
from workflow_api import make, report, runs_of

from tme.controller.store.workflow_models import RunLink


def failed_then_busy(client: Any, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task whose first run failed and whose second (fired again) is still going."""
    task = make(client, "pump", trigger="go", **fields)
    failed = client.post("/api/v1/triggers/go").json()["runs"][0]
    report(client, task, "fail")
    busy = client.post("/api/v1/triggers/go").json()["runs"][0]
    assert busy["state"] == "pending"
    return task, failed


def link_of(client: Any, run_id: str) -> RunLink:
    with Session(client.app.state.runtime.engine) as session:
        link = session.get(RunLink, run_id)
    assert link is not None
    return link


def test_a_retry_by_hand_while_another_run_is_active_is_skipped(test_client) -> None:
    task, failed = failed_then_busy(test_client)  # overlap skip: the default
    busy = runs_of(test_client, task)[0]
    retry = test_client.post(f"/api/v1/runs/{failed['id']}/retry")
    assert retry.status_code == 201, retry.text  # answered as "run now" answers a refusal
    skipped = retry.json()
    assert skipped["state"] == "skipped"
    assert skipped["reason"] == (
        f"retry of run {failed['id']} requested: skipped, run {busy['id']} is still pending"
        " (overlap skip)"
    )
    assert [r["state"] for r in runs_of(test_client, task)].count("pending") == 1
    status = test_client.get(f"/api/v1/tasks/{task['id']}").json()["status"]
    assert status == "pending"  # the task's status stays that of its active run
    # The refused retry is not part of the workflow run: the step keeps its outcome...
    workflow = test_client.get(f"/api/v1/workflows/{failed['id']}").json()
    assert [r["id"] for r in workflow] == [failed["id"]]
    # ...and is retried there once the other run is done.
    report(test_client, task, "complete")
    again = test_client.post(f"/api/v1/runs/{failed['id']}/retry").json()
    assert again["state"] == "pending" and again["attempt"] == 2
    link = link_of(test_client, again["id"])
    assert link.cause == "retry" and link.workflow_id == link.first_run_id == failed["id"]


def test_a_retry_by_hand_fills_allow_up_to_max_then_is_skipped(test_client) -> None:
    task, failed = failed_then_busy(test_client, overlap={"policy": "allow", "max": 2})
    first = test_client.post(f"/api/v1/runs/{failed['id']}/retry").json()
    assert first["state"] == "pending"  # beside the other: two at once are allowed
    second = test_client.post(f"/api/v1/runs/{failed['id']}/retry").json()
    assert second["state"] == "skipped"
    assert second["reason"].endswith(f"run {first['id']} is still pending (overlap allow)")
    assert [r["state"] for r in runs_of(test_client, task)].count("pending") == 2


def test_a_retry_by_hand_waits_in_the_overlap_queue(test_client) -> None:
    task, failed = failed_then_busy(test_client, overlap={"policy": "queue"})
    busy = runs_of(test_client, task)[0]
    retry = test_client.post(f"/api/v1/runs/{failed['id']}/retry")
    assert retry.status_code == 201, retry.text
    held = retry.json()
    assert held["state"] == "waiting" and held["attempt"] == 2
    assert held["reason"] == f"overlap queue: waiting for run {busy['id']} to finish"
    link = link_of(test_client, held["id"])
    assert link.held and (link.cause, link.workflow_id) == ("retry", failed["id"])
    report(test_client, task, "complete")  # the run in progress, not the one behind it
    wait_until(
        lambda: test_client.get(f"/api/v1/runs/{held['id']}").json()["state"] == "queued",
        what="the retry to start once the run before it finished",
    )
