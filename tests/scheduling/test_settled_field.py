"""`settled` on a task and on its runs: a final outcome is settled once the workflow
engine has acted on it (planned its automatic retry, decided its dependents), in a
transaction of its own after the one that made it final.

The scheduling loop is stopped, so only the passes these tests make by hand settle
anything: the window between a final state and its settling stays open as long as
the test needs it (external tasks stand in for machines: see workflow_api)."""

from __future__ import annotations

from typing import Any

from workflow_api import after, make, report, runs_of

NO_WAIT = {"max": 1, "backoff_s": 0, "jitter": 0}  # a retry due at once


def held_loop(client: Any) -> Any:
    """The app's scheduling, its loop stopped: it settles only when the test steps it."""
    scheduling = client.app.state.runtime.scheduling
    scheduling.stop()
    return scheduling


def task_of(client: Any, task: dict[str, Any]) -> tuple[str, bool]:
    found = client.get(f"/api/v1/tasks/{task['id']}").json()
    return found["status"], found["settled"]


def test_a_failure_whose_retry_is_not_planned_yet_is_final_but_not_settled(test_client) -> None:
    scheduling = held_loop(test_client)
    task = make(test_client, "pump", retries=NO_WAIT)
    report(test_client, task, "fail")
    assert task_of(test_client, task) == ("failed", False)  # a retry may still follow
    (failed,) = runs_of(test_client, task)
    assert (failed["state"], failed["settled"]) == ("failed", False)

    scheduling.step(housekeeping=False)  # settles the failure: plans its retry
    assert task_of(test_client, task) == ("waiting", False)  # the retry is the latest run
    retry, failed = runs_of(test_client, task)
    assert (failed["state"], failed["settled"], retry["settled"]) == ("failed", True, False)
    workflow = test_client.get(f"/api/v1/workflows/{failed['id']}").json()
    assert [(r["state"], r["settled"]) for r in workflow] == [("failed", True), ("waiting", False)]

    scheduling.step()  # starts the due retry
    report(test_client, task, "complete")
    assert task_of(test_client, task) == ("succeeded", False)
    scheduling.step()
    assert task_of(test_client, task) == ("succeeded", True)
    assert test_client.get(f"/api/v1/runs/{retry['id']}").json()["settled"] is True
    listed = test_client.get("/api/v1/tasks", params={"q": "pump"}).json()["items"]
    assert [(t["status"], t["settled"]) for t in listed] == [("succeeded", True)]


def test_a_skipped_dependent_is_settled_once_its_own_dependents_are_decided(
    test_client,
) -> None:
    scheduling = held_loop(test_client)
    batch = make(test_client, "batch", trigger="batch")
    flush = make(test_client, "flush", **after(batch))
    test_client.post("/api/v1/triggers/batch")
    report(test_client, batch, "fail")
    assert task_of(test_client, batch) == ("failed", False)
    scheduling.step(housekeeping=False)  # settles the batch, skipping the flush
    assert task_of(test_client, batch) == ("failed", True)
    assert task_of(test_client, flush) == ("skipped", False)
    scheduling.step(housekeeping=False)  # settles the skip
    assert task_of(test_client, flush) == ("skipped", True)


def test_a_task_that_never_ran_is_not_settled(test_client) -> None:
    task = make(test_client, "later", trigger="later")
    assert task_of(test_client, task) == ("idle", False)


def test_a_task_read_before_its_failure_settled_is_not_shown_settled(test_client) -> None:
    """The task row and its latest run's link are read by two statements, each its own
    snapshot (SQLite outside a transaction, PostgreSQL at read committed). When the
    failure is settled between them (its retry planned, the task's latest run now the
    retry), the task read before must not be answered `failed` and settled: a waiter
    would take the failure for the last word while its retry was already planned."""
    from sqlmodel import Session

    from tme.controller.services.tasks import to_publics
    from tme.controller.store.models import Task

    scheduling = held_loop(test_client)
    task = make(test_client, "pump", retries=NO_WAIT)
    report(test_client, task, "fail")
    engine = test_client.app.state.engine
    with Session(engine, expire_on_commit=False) as reader:
        stale = reader.get(Task, task["id"])  # read before the settle: failed, latest = run 1
        assert stale is not None and stale.status == "failed"
        scheduling.step(housekeeping=False)  # settles the failure, plans the retry
        (public,) = to_publics(reader, [stale])
    assert (public.status, public.settled) == ("failed", False)
    assert task_of(test_client, task) == ("waiting", False)
