"""Canceling a workflow run as a whole over the API: its runs going are canceled, and none
of its steps starts or is retried afterwards, whatever its `on` (see workflow_api)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from waiting import wait_until
from workflow_api import after, fire, make, report, runs_of, state_of, wait_for_step

from tme.controller.services.runs import record_hop
from tme.controller.store.models import Run

AGENT = {"site": "nowhere", "agent": "ghost"}  # an agent that never answers: the test does


def hop(client: Any, run_id: str, state: str) -> None:
    """What the run's agent reports, as the event consumer records it."""
    with Session(client.app.state.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        record_hop(session, run, state, reason=f"agent: {state}", source="agent")
        session.commit()
    client.app.state.runtime.scheduling.wake()


def fire_agent_task(client: Any, trigger: str) -> str:
    """Fire a trigger bound to one agent's task; the workflow run it starts."""
    (run,) = client.post(f"/api/v1/triggers/{trigger}").json()["runs"]
    return str(run["id"])


def cancel(client: Any, workflow_id: str, **params: str) -> Any:
    return client.post(f"/api/v1/workflows/{workflow_id}/cancel", params=params)


def test_cancel_stops_the_sequence_its_failure_and_any_steps_included(test_client) -> None:
    """The operator stops the batch: its run is canceled and neither the flush (`success`),
    the alarm (`failure`) nor the clean-up (`any`, which a cancel of the batch's run alone
    would start) runs; each is skipped saying who canceled the workflow run."""
    batch = make(test_client, "batch", trigger="night")
    flush = make(test_client, "flush", **after(batch))
    alarm = make(test_client, "alarm", **after(batch, "failure"))
    cleanup = make(test_client, "clean up", **after(batch, "any"))
    workflow_id = fire(test_client, "night")
    answer = cancel(test_client, workflow_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["workflow_id"] == workflow_id and body["canceled_by"] == "admin"
    (stopped,) = body["runs"]
    assert stopped["id"] == workflow_id and stopped["state"] == "canceled"
    why = f"workflow run {workflow_id} canceled by admin"
    assert stopped["reason"].startswith(why)
    for step in (flush, alarm, cleanup):
        skipped = wait_for_step(test_client, workflow_id, step, "skipped", "pending")
        assert (skipped["state"], skipped["reason"]) == ("skipped", why)
    wait_until(lambda: len(_settled(test_client, workflow_id)) == 4, what="every step settled")
    again = cancel(test_client, workflow_id)
    assert again.status_code == 409
    assert "nothing was running" in again.json()["error"]["message"]


def test_a_step_whose_agent_finishes_after_the_cancel_starts_no_dependent(test_client) -> None:
    """A running step is asked to stop; its agent may still answer `succeeded` (it was
    done): its dependents are skipped all the same, and a failure is not retried."""
    mix = make(test_client, "mix", op="noop", target=AGENT, trigger="mix", retries={"max": 2})
    drain = make(test_client, "drain", **after(mix))
    workflow_id = fire_agent_task(test_client, "mix")
    hop(test_client, workflow_id, "running")
    answer = cancel(test_client, workflow_id)
    assert answer.status_code == 200, answer.text
    assert [r["state"] for r in answer.json()["runs"]] == ["running"]  # asked to stop
    hop(test_client, workflow_id, "succeeded")
    skipped = wait_for_step(test_client, workflow_id, drain, "skipped", "pending")
    assert skipped["state"] == "skipped", skipped
    assert skipped["reason"] == f"workflow run {workflow_id} canceled by admin"

    second = fire_agent_task(test_client, "mix")  # a new workflow run: not canceled
    hop(test_client, second, "running")
    assert cancel(test_client, second).status_code == 200
    hop(test_client, second, "failed")
    failed = wait_for_step(test_client, second, mix, "failed")
    wait_until(lambda: failed["id"] in _settled(test_client, second), what="the failure settled")
    assert [r["attempt"] for r in runs_of(test_client, mix)] == [1, 1]  # no retry planned
    assert f"not retried: workflow run {second} canceled by admin" in failed_reason(
        test_client, failed["id"]
    )
    retried = test_client.post(f"/api/v1/runs/{failed['id']}/retry")
    assert retried.status_code == 409
    assert "canceled by admin" in retried.json()["error"]["message"]


def _settled(client: Any, workflow_id: str) -> set[str]:
    runs = client.get(f"/api/v1/workflows/{workflow_id}").json()
    return {r["id"] for r in runs if r["settled"]}


def failed_reason(client: Any, run_id: str) -> str:
    return str(client.get(f"/api/v1/runs/{run_id}").json()["reason"])


def test_cancel_cancels_every_run_going_and_leaves_the_finished_ones(test_client) -> None:
    """Two branches going at once are both canceled; the step that finished keeps its
    outcome; `force` marks an agent's run canceled without waiting for it."""
    root = make(test_client, "root", trigger="fork")
    left = make(test_client, "left", **after(root))
    right = make(test_client, "right", op="noop", target=AGENT, **after(root))
    workflow_id = fire(test_client, "fork")
    report(test_client, root, "complete")
    wait_for_step(test_client, workflow_id, left, "pending")
    going = wait_for_step(test_client, workflow_id, right, "pending", "queued", "dispatched")
    hop(test_client, going["id"], "running")
    answer = cancel(test_client, workflow_id, force="true")
    assert answer.status_code == 200, answer.text
    runs = answer.json()["runs"]
    assert {r["task_id"] for r in runs} == {left["id"], right["id"]}
    assert {r["state"] for r in runs} == {"canceled"}
    assert state_of(test_client, root) == "succeeded"


def test_cancel_names_what_it_cannot_cancel(test_client, make_token) -> None:
    """Unknown: 404; a step's run id: 404 naming its workflow run; a viewer: 403; an
    operator of another site: 404, as for the workflow run's runs."""
    a = make(test_client, "A", trigger="names")
    b = make(test_client, "B", **after(a))
    workflow_id = fire(test_client, "names")
    report(test_client, a, "complete")
    step = wait_for_step(test_client, workflow_id, b, "pending")
    unknown = cancel(test_client, "no-such-run")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "workflow run no-such-run does not exist"
    of_step = cancel(test_client, step["id"])
    assert of_step.status_code == 404
    assert of_step.json()["error"]["details"]["run_workflow_id"] == workflow_id
    path = f"/api/v1/workflows/{workflow_id}/cancel"
    viewer = {"Authorization": f"Bearer {make_token('viewer')}"}
    assert test_client.post(path, headers=viewer).status_code == 403
    elsewhere = {"Authorization": f"Bearer {make_token('operator', 'elsewhere')}"}
    assert test_client.post(path, headers=elsewhere).status_code == 404
    assert state_of(test_client, b) == "pending"  # none of them canceled anything
