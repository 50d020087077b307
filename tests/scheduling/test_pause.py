"""A paused task starts on its own in no way: not by its schedule (test_slots), its
trigger, its dependencies or a planned retry; only by hand ("run now", a retry by
hand). Resume restores all of them."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from typing import Any

from racing import race
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until
from workflow_api import after, fire, make, report, runs_of, wait_for_step

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
from tme.controller.store.workflow_models import RunLink, TaskPolicy
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate
from tme.states import RunState


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


def failed_with_a_planned_retry(client: Any, *, paused: bool) -> tuple[dict, dict, dict]:
    """A task whose run failed and whose automatic retry is due at once (no backoff),
    paused before the failure if `paused`: the task, the failed run and the retry."""
    retries = {"max": 1, "backoff_s": 0, "jitter": 0}
    task = make(client, "pump", trigger="go", retries=retries)
    failed = client.post("/api/v1/triggers/go").json()["runs"][0]
    if paused:
        pause(client, task)
    report(client, task, "fail")
    wait_until(lambda: len(runs_of(client, task)) == 2, what="the retry to be planned")
    return task, failed, runs_of(client, task)[0]


def run_of(client: Any, run_id: str) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/runs/{run_id}").json())


def test_a_pause_holds_a_planned_retry_whose_time_came_and_resume_starts_it(
    test_client,
) -> None:
    scheduling = test_client.app.state.runtime.scheduling
    # The loop does no housekeeping on its own from now on: only a pass of this test's,
    # or one a wake asks for, starts due retries.
    scheduling.tick_s, scheduling._housekeeping_at = 3600.0, math.inf
    task, _, retry = failed_with_a_planned_retry(test_client, paused=True)
    scheduling.step()  # the retry's time has come: a pass that starts due retries
    held = run_of(test_client, retry["id"])
    assert held["state"] == "waiting"  # not started, not lost
    assert held["reason"].startswith("retry 1 of 1 in 0.00 s")
    assert held["reason"].endswith("; held while its task is paused: starts once it is resumed")
    scheduling.step()
    assert run_of(test_client, retry["id"])["reason"] == held["reason"]  # said once
    pause(test_client, task, "resume")  # its wake starts the retry, not the next tick
    wait_until(
        lambda: run_of(test_client, retry["id"])["state"] == "queued",
        what="the held retry to start on resume",
    )
    assert len(runs_of(test_client, task)) == 2  # that retry, not another run


def test_a_retry_by_hand_while_paused_starts_the_held_retry(test_client) -> None:
    task, failed, retry = failed_with_a_planned_retry(test_client, paused=True)
    test_client.app.state.runtime.scheduling.step()  # due, and held by the pause
    assert run_of(test_client, retry["id"])["state"] == "waiting"
    by_hand = test_client.post(f"/api/v1/runs/{failed['id']}/retry")
    assert by_hand.status_code == 201, by_hand.text
    assert by_hand.json()["id"] == retry["id"] and by_hand.json()["state"] == "queued"
    assert len(runs_of(test_client, task)) == 2  # a pause holds no start by hand


def test_a_retry_planned_before_the_pause_is_held_once_paused(test_client) -> None:
    task = make(test_client, "pump", trigger="go", retries={"max": 1, "backoff_s": 3600})
    test_client.post("/api/v1/triggers/go")
    report(test_client, task, "fail")
    wait_until(lambda: len(runs_of(test_client, task)) == 2, what="the retry to be planned")
    retry = runs_of(test_client, task)[0]
    pause(test_client, task)
    engine = test_client.app.state.runtime.engine
    with Session(engine) as session:  # its hour passed
        link = session.get(RunLink, retry["id"])
        assert link is not None and link.retry_at is not None
        link.retry_at = utcnow() - timedelta(seconds=1)
        session.add(link)
        session.commit()
    test_client.app.state.runtime.scheduling.step()
    assert run_of(test_client, retry["id"])["state"] == "waiting"
    with Session(engine) as session:
        link = session.get(RunLink, retry["id"])
        assert link is not None and link.retry_at is not None  # still planned


def _planned_retry_of_a_paused_task(engine: Engine) -> tuple[str, str]:
    """A paused task's failed run and its retry, due at once: their ids."""
    with session_scope(engine) as session:
        retries = {"max": 1, "backoff_s": 0, "jitter": 0}
        task, _ = create_task(session, TaskCreate(name="pump", trigger="go", retries=retries))
        get_policy(session, task).paused = True
        failed = launch_run(session, task, cause="manual", reason="run now", hook=None)
        transition(session, failed, RunState.failed, reason="reported fail")
        assert settle_run(session, failed, None)
        retry = session.exec(select(Run).where(Run.task_id == task.id, Run.attempt == 2)).one()
    return failed.id, retry.id


def test_a_paused_tasks_due_retry_is_held_until_resumed_on_both_stores(
    any_engine: Engine,
) -> None:
    _, retry_id = _planned_retry_of_a_paused_task(any_engine)
    started: list[str] = []

    def hook(_session: Session, run: Run, _task: Task) -> None:
        started.append(run.id)

    with session_scope(any_engine) as session:
        start_due_retries(session, hook, utcnow())
    assert started == []
    with Session(any_engine) as session:
        held = session.get(Run, retry_id)
        link = session.get(RunLink, retry_id)
        assert held is not None and held.state == RunState.waiting
        assert held.reason.endswith(HELD_BY_PAUSE)
        assert link is not None and link.retry_at is not None  # still planned
    with session_scope(any_engine) as session:
        task_id = session.exec(select(Run.task_id).where(Run.id == retry_id)).one()
        policy = session.get(TaskPolicy, task_id)
        assert policy is not None
        policy.paused = False
    with session_scope(any_engine) as session:
        start_due_retries(session, hook, utcnow())
    assert started == [retry_id]


def test_a_held_retry_started_by_hand_meanwhile_keeps_its_own_reason(any_engine: Engine) -> None:
    # The operator retries by hand (starting the held retry) while the scheduling pass,
    # which read the retry as waiting, notes the hold: the note must not land on the
    # run the operator started.
    failed_id, retry_id = _planned_retry_of_a_paused_task(any_engine)
    hook = RunReady(Settings(), threading.Event())

    def pass_notes_the_hold() -> None:
        with session_scope(any_engine) as session:
            start_due_retries(session, hook, utcnow())

    race(
        any_engine,
        lambda first: retry_run(first, failed_id, hook),
        pass_notes_the_hold,
        "JOIN runs",
        "the pass to read the due retries or lock",
    )
    with Session(any_engine) as session:
        run = session.get(Run, retry_id)
    assert run is not None and run.state == RunState.queued
    assert HELD_BY_PAUSE not in run.reason, run.reason
