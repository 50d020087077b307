"""A retry by hand follows its task's overlap policy as "run now" does: while another run
of the task is active it is recorded as skipped (skip, or allow with `max` active) or
waits in the overlap queue (queue), never a second run at once on one machine.

A planned automatic retry whose time comes while the policy leaves it no room is not
thrown away: it waits in the task's overlap queue, saying for which run, and starts
once that run finishes (a retry by hand of it too), within the task's total deadline."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select
from waiting import wait_until
from workflow_api import make, report, runs_of

from tme.config import Settings
from tme.controller.retries import HELD_BY_PAUSE, start_due_retries
from tme.controller.run_ready import RunReady
from tme.controller.services.cancel import retry_run
from tme.controller.services.launch import launch_run
from tme.controller.services.policies import get_policy
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, Task, utcnow
from tme.controller.store.workflow_models import RunLink
from tme.controller.watchdog import check_timeouts
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import FINAL_STATES, RunState


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


HOOK = RunReady(Settings(), threading.Event())


def fire(session: Session, task: Task) -> Run:
    return launch_run(session, task, cause="trigger", reason="trigger go", hook=HOOK)


def failure_and_others(
    session: Session, others: int = 1, backoff_s: float = 0, **fields: Any
) -> tuple[Task, Run, list[Run]]:
    """A task (reported by a person) whose run failed, and `others` runs of it fired
    before that failure settled, going on: the task, the failed run, the others. Its
    retry is due at once once the failure settles, or in `backoff_s`."""
    retries = {"max": 1, "backoff_s": backoff_s, "jitter": 0}
    task, _ = create_task(session, TaskCreate(name="pump", trigger="go", retries=retries, **fields))
    failed = fire(session, task)
    transition(session, failed, RunState.failed, reason="reported fail")
    going = [fire(session, task) for _ in range(others)]
    assert [r.state for r in going] == [RunState.pending] * others
    return task, failed, going


def failed_with_others_going(
    session: Session, others: int = 1, backoff_s: float = 0, **fields: Any
) -> tuple[Task, Run, list[Run], Run]:
    """`failure_and_others`, the failure settled: with the retry it planned."""
    task, failed, going = failure_and_others(session, others, backoff_s, **fields)
    assert settle_run(session, failed, HOOK)
    retry = session.exec(select(Run).where(Run.task_id == task.id, Run.attempt == 2)).one()
    assert retry.state == RunState.waiting
    return task, failed, going, retry


def finish(session: Session, run: Run) -> None:
    transition(session, run, RunState.succeeded, reason="reported complete")
    assert settle_run(session, run, HOOK)


def active_of(session: Session, task: Task) -> list[Run]:
    runs = session.exec(select(Run).where(Run.task_id == task.id).order_by(col(Run.created_at)))
    return [r for r in runs if r.state not in FINAL_STATES]


def link_in(session: Session, run: Run) -> RunLink:
    link = session.get(RunLink, run.id)
    assert link is not None
    return link


@pytest.mark.parametrize("policy", ["skip", "queue"])
def test_a_due_retry_waits_for_the_run_going_on_and_starts_once_it_finished(
    session: Session, policy: str
) -> None:
    task, _, [going], retry = failed_with_others_going(session, overlap={"policy": policy})
    start_due_retries(session, HOOK, utcnow())
    assert retry.state == RunState.waiting  # not started beside the run going on
    assert retry.reason.startswith("retry 1 of 1 in 0.00 s, at ")
    assert retry.reason.endswith(f"; due: waiting for run {going.id} to finish (overlap {policy})")
    assert link_in(session, retry).held  # in the overlap queue
    start_due_retries(session, HOOK, utcnow())  # a later pass: still waiting, said once
    assert retry.state == RunState.waiting and retry.reason.count("; ") == 1
    finish(session, going)  # the workflow pass lets the queue go, as for any held run
    assert retry.state == RunState.queued
    link = link_in(session, retry)
    assert not link.held and link.retry_at is None
    assert [r.id for r in active_of(session, task)] == [retry.id]


def test_a_due_retry_under_allow_starts_as_soon_as_fewer_than_max_are_going(
    session: Session,
) -> None:
    overlap = {"policy": "allow", "max": 2}
    task, _, [first, second], retry = failed_with_others_going(session, 2, overlap=overlap)
    start_due_retries(session, HOOK, utcnow())
    assert retry.state == RunState.waiting
    assert retry.reason.endswith(f"waiting for run {second.id} to finish (overlap allow)")
    finish(session, first)  # one of two done: room for the retry, beside the other
    assert retry.state == RunState.queued
    assert {r.id for r in active_of(session, task)} == {second.id, retry.id}


def test_two_due_retries_of_one_task_start_one_after_the_other(session: Session) -> None:
    # Two runs failed before either failure settled: both retries come due at once.
    retries = {"max": 1, "backoff_s": 0, "jitter": 0}
    task, _ = create_task(session, TaskCreate(name="pump", trigger="go", retries=retries))
    failed = []
    for _ in range(2):
        failed.append(fire(session, task))
        transition(session, failed[-1], RunState.failed, reason="reported fail")
    for run in failed:
        assert settle_run(session, run, HOOK)
    start_due_retries(session, HOOK, utcnow())
    active = active_of(session, task)
    assert sorted(r.state for r in active) == [RunState.queued, RunState.waiting]
    [started] = [r for r in active if r.state == RunState.queued]
    [waits] = [r for r in active if r.state == RunState.waiting]
    assert waits.reason.endswith(f"waiting for run {started.id} to finish (overlap skip)")
    finish(session, started)
    assert waits.state == RunState.queued


def test_a_retry_by_hand_of_a_planned_retry_waits_for_the_run_going_on(
    session: Session,
) -> None:
    task, failed, [going], retry = failed_with_others_going(session, backoff_s=3600)
    by_hand = retry_run(session, failed.id, HOOK)
    assert by_hand.id == retry.id  # the planned retry, not a second run
    assert by_hand.state == RunState.waiting
    assert by_hand.reason == (
        f"retry of run {failed.id} requested: waiting for run {going.id} to finish (overlap skip)"
    )
    link = link_in(session, retry)
    assert link.held and link.retry_at is None  # its hour no longer counts
    finish(session, going)
    assert retry.state == RunState.queued
    assert [r.id for r in active_of(session, task)] == [retry.id]


def test_a_pause_holds_a_due_retry_waiting_in_the_overlap_queue(session: Session) -> None:
    task, _, [going], retry = failed_with_others_going(session)
    start_due_retries(session, HOOK, utcnow())
    assert link_in(session, retry).held
    get_policy(session, task).paused = True
    finish(session, going)  # room, but the pause holds the planned retry
    start_due_retries(session, HOOK, utcnow())
    assert retry.state == RunState.waiting and retry.reason.endswith(HELD_BY_PAUSE)
    get_policy(session, task).paused = False  # resumed: the next pass starts it
    start_due_retries(session, HOOK, utcnow())
    assert retry.state == RunState.queued


def test_a_due_retry_waiting_for_room_past_the_total_deadline_times_out(
    session: Session,
) -> None:
    task, _, [going], retry = failed_with_others_going(session, deadline_s=60)
    start_due_retries(session, HOOK, utcnow())
    assert retry.state == RunState.waiting
    link_in(session, going).deadline_at = None  # the run going on has all the time it needs
    later = utcnow() + timedelta(seconds=61)
    check_timeouts(session, later, default_timeout_s=3600)
    assert retry.state == RunState.timed_out
    assert retry.reason == "total deadline across retries passed"
    finish(session, going)  # room now, but the retry is over
    start_due_retries(session, HOOK, later)
    assert active_of(session, task) == []
    assert link_in(session, retry).retry_at is None
    assert len(session.exec(select(Run).where(Run.task_id == task.id)).all()) == 3


def test_the_controller_starts_a_due_retry_once_the_run_it_waits_for_is_reported(
    test_client,
) -> None:
    # The failure and the second run are stored before the controller settles the
    # failure, as when a trigger fires between a run's failure and its settling.
    with session_scope(test_client.app.state.runtime.engine) as session:
        task, _, [going] = failure_and_others(session)
    retry = wait_until(
        lambda: next((r for r in runs_of(test_client, {"id": task.id}) if r["attempt"] == 2), None),
        what="the retry to be planned",
    )
    wait_until(
        lambda: (
            test_client.get(f"/api/v1/runs/{retry['id']}")
            .json()["reason"]
            .endswith(f"waiting for run {going.id} to finish (overlap skip)")
        ),
        what="the due retry to wait for the run going on",
    )
    assert test_client.get(f"/api/v1/runs/{retry['id']}").json()["state"] == "waiting"
    report(test_client, {"id": task.id}, "complete")  # about the run going on
    assert test_client.get(f"/api/v1/runs/{going.id}").json()["state"] == "succeeded"
    wait_until(
        lambda: test_client.get(f"/api/v1/runs/{retry['id']}").json()["state"] == "queued",
        what="the retry to start once the run it waited for finished",
    )
    assert [r["state"] for r in runs_of(test_client, {"id": task.id})] == [
        "queued",
        "succeeded",
        "failed",
    ]
