"""Workflow runs over the API: chains, branches, joins, cycles, retries, cancel, triggers
(external tasks stand in for machines: see workflow_api)."""

from __future__ import annotations

from sqlmodel import Session
from waiting import wait_until
from workflow_api import after, fire, make, report, runs_of, state_of, wait_for_step

from tme.controller.store.workflow_models import RunLink


def test_chain_a_ok_then_b_runs_in_the_same_workflow(test_client) -> None:
    a = make(test_client, "A", trigger="chain")
    b = make(test_client, "B", **after(a))
    assert state_of(test_client, b) is None  # a dependent does not run by itself
    fired = test_client.post("/api/v1/triggers/chain").json()
    assert [r["task_id"] for r in fired["runs"]] == [a["id"]]
    report(test_client, a, "complete")
    wait_until(lambda: state_of(test_client, b) == "pending", what="B to start")
    workflow = test_client.get(f"/api/v1/workflows/{fired['runs'][0]['id']}").json()
    assert {r["task_id"] for r in workflow} == {a["id"], b["id"]}


def test_a_started_step_says_why_it_started(test_client) -> None:
    """A run's reason is its latest hop's: a step a dependency, a trigger or a retry
    started shows why in run lists and run details while it is still pending (the reason
    was kept only in its first hop, and lists showed it blank)."""
    a = make(test_client, "A", trigger="why")
    b = make(test_client, "B", **after(a))
    fired = test_client.post("/api/v1/triggers/why").json()["runs"][0]
    assert (
        fired["reason"]
        == test_client.get(f"/api/v1/runs/{fired['id']}").json()["events"][0]["reason"]
    )
    assert fired["reason"]
    report(test_client, a, "complete")
    wait_until(lambda: state_of(test_client, b) == "pending", what="B to start")
    (step,) = runs_of(test_client, b)
    detail = test_client.get(f"/api/v1/runs/{step['id']}").json()
    assert step["reason"] and step["reason"] == detail["reason"] == detail["events"][0]["reason"]


def test_a_reported_outcome_settles_its_dependents_at_once(test_client) -> None:
    """A status report wakes the scheduling loop: with its tick made an hour long, only
    that wake can start the dependent (and skip the other branch)."""
    test_client.app.state.runtime.scheduling.tick_s = 3600.0  # from its next wait on
    first = make(test_client, "first", trigger="once")
    settled = make(test_client, "settled", **after(first))
    a = make(test_client, "A", trigger="woken")
    b = make(test_client, "B", **after(a))
    skipped = make(test_client, "skipped", **after(a, "failure"))
    test_client.post("/api/v1/triggers/once")
    report(test_client, first, "complete")
    # Once the pass that settled it is over (woken, or at the end of a wait begun
    # before the tick grew), the loop waits an hour unless woken.
    wait_until(lambda: state_of(test_client, settled) == "pending", what="the first dependent")
    test_client.post("/api/v1/triggers/woken")
    reported = test_client.put(f"/task/{a['id']}/", json={"status": "complete"})
    assert reported.status_code == 200  # the documented path
    wait_until(lambda: state_of(test_client, b) == "pending", what="B started by the wake")
    wait_until(lambda: state_of(test_client, skipped) == "skipped", what="the other branch")


def test_failure_runs_the_failure_branch_and_skips_the_success_branch(test_client) -> None:
    a = make(test_client, "A", trigger="branch")
    ok = make(test_client, "on success", **after(a, "success"))
    bad = make(test_client, "on failure", **after(a, "failure"))
    test_client.post("/api/v1/triggers/branch")
    report(test_client, a, "fail")
    wait_until(lambda: state_of(test_client, bad) == "pending", what="the failure branch")
    wait_until(lambda: state_of(test_client, ok) == "skipped", what="the success branch skipped")
    assert "needs success" in runs_of(test_client, ok)[0]["reason"]


def test_retried_step_continues_the_workflow(test_client) -> None:
    a = make(test_client, "A", trigger="again")
    b = make(test_client, "B", **after(a))
    first = test_client.post("/api/v1/triggers/again").json()["runs"][0]
    report(test_client, a, "fail")
    wait_until(lambda: state_of(test_client, b) == "skipped", what="B skipped")
    retry = test_client.post(f"/api/v1/runs/{first['id']}/retry")
    assert retry.status_code == 201 and retry.json()["attempt"] == 2
    report(test_client, a, "complete")
    wait_until(lambda: state_of(test_client, b) == "pending", what="B to run after the retry")


def test_join_waits_for_both_predecessors(test_client) -> None:
    root = make(test_client, "root", trigger="join")
    left = make(test_client, "left", **after(root))
    right = make(test_client, "right", **after(root))
    join = make(
        test_client,
        "join",
        depends_on=[{"task": left["id"], "on": "success"}, {"task": right["id"], "on": "any"}],
    )
    test_client.post("/api/v1/triggers/join")
    report(test_client, root, "complete")
    wait_until(lambda: state_of(test_client, right) == "pending", what="both branches")
    report(test_client, left, "complete")
    test_client.app.state.runtime.scheduling.step()  # settle now: the join must still wait
    assert state_of(test_client, join) is None
    report(test_client, right, "fail")
    wait_until(lambda: state_of(test_client, join) == "pending", what="the join to start")


def test_cycle_is_refused_naming_it(test_client) -> None:
    a = make(test_client, "A", trigger="cycle")
    b = make(test_client, "B", **after(a))
    response = test_client.patch(f"/api/v1/tasks/{a['id']}", json=after(b))
    assert response.status_code == 422
    assert f"{a['id']} -> {b['id']} -> {a['id']}" in response.json()["error"]["message"]


def test_retries_with_backoff_then_give_up(test_client) -> None:
    task = make(
        test_client, "flaky", trigger="flaky", retries={"max": 2, "backoff_s": 0.2, "jitter": 0}
    )
    test_client.post("/api/v1/triggers/flaky")
    report(test_client, task, "fail")
    wait_until(lambda: len(runs_of(test_client, task)) == 2, what="the first retry")
    retry = runs_of(test_client, task)[0]
    assert retry["attempt"] == 2 and "in 0.20 s" in retry["reason"]
    report(test_client, task, "fail")
    wait_until(lambda: len(runs_of(test_client, task)) == 3, what="the second retry")
    assert "in 0.40 s" in runs_of(test_client, task)[0]["reason"]  # exponential
    report(test_client, task, "fail")
    wait_until(lambda: state_of(test_client, task) == "failed", what="the last attempt")
    assert len(runs_of(test_client, task)) == 3  # max 2 retries: no fourth run


def test_run_now_and_cancel_a_queued_run(test_client) -> None:
    task = make(test_client, "manual", trigger="never", overlap={"policy": "queue"})
    first = test_client.post(f"/api/v1/tasks/{task['id']}/run").json()
    second = test_client.post(f"/api/v1/tasks/{task['id']}/run").json()
    assert second["state"] == "waiting"  # overlap queue
    canceled = test_client.post(f"/api/v1/runs/{second['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    again = test_client.post(f"/api/v1/runs/{second['id']}/cancel")
    assert again.status_code == 409
    assert first["state"] == "pending"


def test_overlap_queue_starts_the_next_run_when_the_first_finishes(test_client) -> None:
    target = {"site": "nowhere", "agent": "ghost"}
    task = make(test_client, "queued", op="noop", target=target, overlap={"policy": "queue"})
    first = runs_of(test_client, task)[0]  # created tasks run at once
    waiting = test_client.post(f"/api/v1/tasks/{task['id']}/run").json()
    assert waiting["state"] == "waiting"
    stopped = test_client.post(f"/api/v1/runs/{first['id']}/cancel", params={"force": "true"})
    assert stopped.json()["state"] == "canceled"
    wait_until(
        lambda: (
            test_client.get(f"/api/v1/runs/{waiting['id']}").json()["state"]
            in ("queued", "dispatched")
        ),
        what="the queued run to start",
    )


def test_retry_by_hand_while_a_retry_is_planned_starts_that_one(test_client) -> None:
    # A step failed and its automatic retry waits out a long backoff; the operator
    # presses retry. The step must run once more, not twice (planned + by hand).
    task = make(
        test_client, "flaky", trigger="soon", retries={"max": 1, "backoff_s": 3600, "jitter": 0}
    )
    first = test_client.post("/api/v1/triggers/soon").json()["runs"][0]
    report(test_client, task, "fail")
    wait_until(lambda: len(runs_of(test_client, task)) == 2, what="the planned retry")
    planned = runs_of(test_client, task)[0]
    retry = test_client.post(f"/api/v1/runs/{first['id']}/retry")
    assert retry.status_code == 201 and retry.json()["id"] == planned["id"]
    assert len(runs_of(test_client, task)) == 2
    with Session(test_client.app.state.runtime.engine) as session:
        link = session.get(RunLink, planned["id"])
        assert link is not None and link.retry_at is None  # not started again when due


def test_join_of_two_separately_fired_tasks_is_refused_naming_them(test_client) -> None:
    a = make(test_client, "batch", trigger="batch")
    b = make(test_client, "report", schedule={"every_s": 3600})
    join = {"name": "flush", "depends_on": [{"task": a["id"]}, {"task": b["id"]}]}
    response = test_client.post("/api/v1/tasks", json=join)
    assert response.status_code == 422
    error = response.json()["error"]
    assert f"task {a['id']} and task {b['id']}" in error["message"]
    assert f"make task {b['id']} depend on task {a['id']}" in error["message"]
    # What it says to do works: once B follows A, A's workflow runs reach both.
    assert test_client.patch(f"/api/v1/tasks/{b['id']}", json=after(a)).status_code == 200
    flush = make(test_client, "flush", depends_on=join["depends_on"])
    undo = test_client.patch(f"/api/v1/tasks/{b['id']}", json={"depends_on": []})
    assert undo.status_code == 422 and f"task {flush['id']} would never start" in undo.text


def test_run_now_half_way_skips_the_join_it_cannot_complete(test_client) -> None:
    a = make(test_client, "A", trigger="half")
    b = make(test_client, "B", **after(a))
    join = make(test_client, "join", depends_on=[{"task": a["id"]}, {"task": b["id"]}])
    test_client.post(f"/api/v1/tasks/{b['id']}/run")  # a workflow run of B's own: A not in it
    report(test_client, b, "complete")
    wait_until(lambda: state_of(test_client, join) == "skipped", what="the join skipped")
    reason = runs_of(test_client, join)[0]["reason"]
    assert f"task {a['id']} never runs in this workflow run" in reason


def test_a_join_whose_missing_dependency_is_removed_starts_in_the_workflow_run_going_on(
    test_client,
) -> None:
    """A join waiting for its second dependency, which is then removed from it, starts on
    the first one's outcome in the workflow run going on. It never started there: the
    first had finished while the join still waited, and the removed one's outcome no
    longer concerned it, so the join had no run and the workflow run looked over."""
    root = make(test_client, "root", trigger="narrowed")
    left = make(test_client, "left", **after(root))
    right = make(test_client, "right", **after(root))
    join = make(test_client, "join", depends_on=[{"task": left["id"]}, {"task": right["id"]}])
    workflow_id = fire(test_client, "narrowed")
    report(test_client, root, "complete")
    wait_until(lambda: state_of(test_client, right) == "pending", what="both branches")
    report(test_client, left, "complete")
    test_client.app.state.runtime.scheduling.step()  # settled: the join waits for right
    assert state_of(test_client, join) is None
    changed = test_client.patch(f"/api/v1/tasks/{join['id']}", json=after(left))
    assert changed.status_code == 200, changed.text
    step = wait_for_step(test_client, workflow_id, join, "pending")
    assert step["cause"] == "dependency"
    report(test_client, right, "complete")
    test_client.app.state.runtime.scheduling.step()
    assert len(runs_of(test_client, join)) == 1  # started once


def test_a_changed_dependency_starts_nothing_where_the_task_did_not_wait(test_client) -> None:
    """Only a workflow run still going that had reached the task is looked at again: one
    that is over stays as it ended, and a task newly made a dependent of a step finished
    in a workflow run going on waits for that step's next outcome."""
    root = make(test_client, "root", trigger="over")
    left = make(test_client, "left", **after(root))
    right = make(test_client, "right", **after(root))
    waited = make(test_client, "waited", depends_on=[{"task": left["id"]}, {"task": right["id"]}])
    fire(test_client, "over")
    report(test_client, root, "complete")
    wait_until(lambda: state_of(test_client, right) == "pending", what="both branches")
    report(test_client, left, "complete")
    report(test_client, right, "complete")
    wait_until(lambda: state_of(test_client, waited) == "pending", what="the join")
    report(test_client, waited, "complete")
    test_client.app.state.runtime.scheduling.step()  # that workflow run is over
    going = fire(test_client, "over")
    report(test_client, root, "complete")
    wait_until(lambda: state_of(test_client, left) == "pending", what="left again")
    report(test_client, left, "complete")
    test_client.app.state.runtime.scheduling.step()  # right still going: `going` is too
    other = make(test_client, "other", trigger="other")
    late = make(test_client, "late", **after(other))
    changed = test_client.patch(f"/api/v1/tasks/{late['id']}", json=after(left))
    assert changed.status_code == 200, changed.text
    changed = test_client.patch(f"/api/v1/tasks/{waited['id']}", json=after(left))
    assert changed.status_code == 200, changed.text
    assert wait_for_step(test_client, going, waited, "pending")  # it waited in `going`
    test_client.app.state.runtime.scheduling.step()
    assert state_of(test_client, late) is None  # `going` had not reached it
    assert len(runs_of(test_client, waited)) == 2  # not again in the one that is over


def test_a_run_id_given_for_a_workflow_run_names_the_workflow_run_it_is_in(test_client) -> None:
    """A step's run id (as `tme task show` lists it) is no workflow run's id: the 404 says
    which workflow run the run is in, where it said only that none exists, though the run
    the operator had just copied does."""
    a = make(test_client, "A", trigger="which")
    b = make(test_client, "B", **after(a))
    workflow_id = fire(test_client, "which")
    report(test_client, a, "complete")
    step = wait_for_step(test_client, workflow_id, b, "pending")
    answer = test_client.get(f"/api/v1/workflows/{step['id']}")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["message"] == (
        f"workflow run {step['id']} does not exist: run {step['id']} is a step of"
        f" workflow run {workflow_id}"
    )
    assert error["details"] == {"workflow_id": step["id"], "run_workflow_id": workflow_id}
    unknown = test_client.get("/api/v1/workflows/no-such-run").json()["error"]
    assert unknown["message"] == "workflow run no-such-run does not exist"


def test_a_task_named_twice_in_depends_on_is_refused_naming_the_second(test_client) -> None:
    """One dependency per task: a second one on the same task (another `on`) is a 422
    naming it, on create, batch create and change. It was a 409 saying the write had
    conflicted with a concurrent one and to retry, which could never succeed."""
    a = make(test_client, "A", trigger="twice")
    twice = {"depends_on": [{"task": a["id"]}, {"task": a["id"], "on": "failure"}]}
    expected = f"task {a['id']} is already at depends_on.0: give each task once"
    made = test_client.post("/api/v1/tasks", json={"name": "B", **twice})
    assert made.status_code == 422, made.text
    assert made.json()["error"]["details"] == [
        {"field": "depends_on.1.task", "message": expected, "type": "value_error"}
    ]
    batch = test_client.post("/api/v1/tasks/batch", json={"tasks": [{"name": "B", **twice}]})
    assert batch.status_code == 422, batch.text
    assert batch.json()["error"]["details"][0]["field"] == "tasks.0.depends_on.1.task"
    b = make(test_client, "B", **after(a))
    changed = test_client.patch(f"/api/v1/tasks/{b['id']}", json=twice)
    assert changed.status_code == 422, changed.text
    assert expected in changed.json()["error"]["message"]
    assert test_client.get(f"/api/v1/tasks/{b['id']}").json()["depends_on"] == [
        {"task": a["id"], "on": "success"}
    ]
    assert len(test_client.get("/api/v1/tasks").json()["items"]) == 2  # nothing else stored
