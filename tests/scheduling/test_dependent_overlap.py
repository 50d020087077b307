"""A task's overlap policy holds for the runs its dependencies start, as for those its
schedule, trigger or "run now" start: a dependent still running when a second workflow
run reaches it is skipped there (skip), waits for it (queue), or runs beside it up to
`max` (allow)."""

from __future__ import annotations

from workflow_api import after, fire, make, report, wait_for_step


def test_a_dependent_still_running_is_skipped_in_the_next_workflow_run(test_client) -> None:
    batch = make(test_client, "batch", trigger="batch")
    flush = make(test_client, "flush", **after(batch))  # overlap skip: the default
    log = make(test_client, "log", **after(flush, "any"))
    rinse = make(test_client, "rinse", **after(flush, "success"))
    first = fire(test_client, "batch")
    report(test_client, batch, "complete")
    running = wait_for_step(test_client, first, flush, "pending")
    second = fire(test_client, "batch")
    report(test_client, batch, "complete")
    skipped = wait_for_step(test_client, second, flush, "skipped")
    assert skipped["reason"].endswith(f"run {running['id']} is still pending (overlap skip)")
    # The skip counts as any other: `any` dependents run, `success` ones are skipped.
    wait_for_step(test_client, second, log, "pending")
    wait_for_step(test_client, second, rinse, "skipped")
    status = test_client.get(f"/api/v1/tasks/{flush['id']}").json()["status"]
    assert status == "pending"  # a refused start leaves the task's status to its active run


def test_a_dependent_with_overlap_queue_starts_when_its_running_run_ends(test_client) -> None:
    target = {"site": "nowhere", "agent": "ghost"}  # a machine task no agent answers
    batch = make(test_client, "batch", trigger="batch")
    flush = make(
        test_client, "flush", op="noop", target=target, overlap={"policy": "queue"}, **after(batch)
    )
    first = fire(test_client, "batch")
    report(test_client, batch, "complete")
    running = wait_for_step(test_client, first, flush, "queued", "dispatched")
    second = fire(test_client, "batch")
    report(test_client, batch, "complete")
    waiting = wait_for_step(test_client, second, flush, "waiting")
    assert waiting["reason"] == f"overlap queue: waiting for run {running['id']} to finish"
    stopped = test_client.post(f"/api/v1/runs/{running['id']}/cancel", params={"force": "true"})
    assert stopped.json()["state"] == "canceled"
    started = wait_for_step(test_client, second, flush, "queued", "dispatched")
    assert started["id"] == waiting["id"]


def test_a_dependent_allowing_two_at_once_skips_the_third(test_client) -> None:
    batch = make(test_client, "batch", trigger="batch")
    flush = make(test_client, "flush", overlap={"policy": "allow", "max": 2}, **after(batch))
    workflows = []
    for _ in range(3):
        workflows.append(fire(test_client, "batch"))
        report(test_client, batch, "complete")
    wait_for_step(test_client, workflows[0], flush, "pending")
    wait_for_step(test_client, workflows[1], flush, "pending")
    third = wait_for_step(test_client, workflows[2], flush, "skipped")
    assert third["reason"].endswith("(overlap allow)")
