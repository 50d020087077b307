"""A trigger and a schedule firing one task at the same moment start one run, not two,
when its overlap policy is skip, and so do two workflow runs reaching one dependent and
a retry by hand beside a trigger: on both dialects the second start waits for the first
to commit and then counts its run. A retry by hand and the scheduling pass taking the
same due retry at once hand it on once: one command, not two with one id."""

from __future__ import annotations

import threading

from racing import race
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.retries import start_due_retries
from tme.controller.run_ready import RunReady
from tme.controller.services.cancel import retry_run
from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task, update_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Run, RunEvent, Task, utcnow
from tme.controller.workflow import settle_run
from tme.schemas import TaskCreate, TaskUpdate
from tme.states import FINAL_STATES, RunState


def test_trigger_and_schedule_at_once_start_one_run(any_engine: Engine) -> None:
    with session_scope(any_engine) as session:
        task, _ = create_task(
            session, TaskCreate(name="flush", trigger="batch-done", overlap={"policy": "skip"})
        )
    task_id = task.id or 0

    def launch(session: Session, cause: str) -> None:
        own = session.get(Task, task_id)
        assert own is not None
        launch_run(session, own, cause=cause, reason=f"{cause} fired", hook=None)

    def schedule_fires() -> None:
        with session_scope(any_engine) as session:
            launch(session, "schedule")

    race(
        any_engine,
        lambda first: launch(first, "trigger"),
        schedule_fires,
        "FROM runs",
        "the schedule's launch to count or lock",
    )
    with Session(any_engine) as session:
        runs = session.exec(
            select(Run).where(Run.task_id == task_id).order_by(col(Run.created_at))
        ).all()
    active = [r for r in runs if r.state not in FINAL_STATES]
    assert len(runs) == 2 and len(active) == 1, [(r.state, r.reason) for r in runs]


def test_a_retry_by_hand_and_a_trigger_at_once_start_one_run(any_engine: Engine) -> None:
    # The pump's run failed; the operator retries it as its trigger fires again: the
    # retry waits for the trigger's launch to commit, counts its run and is skipped.
    with session_scope(any_engine) as session:
        task, _ = create_task(session, TaskCreate(name="pump", trigger="go"))  # overlap skip
        failed = launch_run(session, task, cause="trigger", reason="trigger go", hook=None)
        transition(session, failed, RunState.failed, reason="reported fail")
    task_id = task.id or 0

    def trigger_fires(session: Session) -> None:
        own = session.get(Task, task_id)
        assert own is not None
        launch_run(session, own, cause="trigger", reason="trigger go", hook=None)

    def retry_by_hand() -> None:
        with session_scope(any_engine) as session:
            retry_run(session, failed.id, None)

    race(any_engine, trigger_fires, retry_by_hand, "FROM runs", "the retry to count or lock")
    with Session(any_engine) as session:
        runs = session.exec(select(Run).where(Run.task_id == task_id)).all()
    active = [r for r in runs if r.state not in FINAL_STATES]
    assert len(runs) == 3 and len(active) == 1, [(r.state, r.reason) for r in runs]
    skipped = [r for r in runs if r.state == RunState.skipped]
    assert len(skipped) == 1 and skipped[0].reason.startswith(f"retry of run {failed.id}")


def test_a_retry_by_hand_and_the_pass_starting_due_retries_start_the_retry_once(
    any_engine: Engine,
) -> None:
    # The pump's run failed and its retry came due; the operator retries the failed run
    # (which starts that planned retry) as the scheduling pass takes the due retry. The
    # pass waits for the retry by hand and sees the retry started: it read it as still
    # waiting and queued it again, a second command with the same id for the agent.
    hook = RunReady(Settings(), threading.Event())
    with session_scope(any_engine) as session:
        task, _ = create_task(
            session,
            TaskCreate(
                name="pump",
                op="noop",
                target={"site": "plant-1", "agent": "skid-a"},
                trigger="go",
                retries={"max": 1, "backoff_s": 0, "jitter": 0},
            ),
        )
        failed = launch_run(session, task, cause="trigger", reason="trigger go", hook=hook)
        transition(session, failed, RunState.failed, reason="reported fail")
        assert settle_run(session, failed, hook)
        retry = session.exec(select(Run).where(Run.task_id == task.id, Run.attempt == 2)).one()

    def pass_starts_due_retries() -> None:
        with session_scope(any_engine) as session:
            start_due_retries(session, hook, utcnow())

    race(
        any_engine,
        lambda first: retry_run(first, failed.id, hook),
        pass_starts_due_retries,
        "JOIN runs",
        "the pass to read the due retries or lock",
    )
    with Session(any_engine) as session:
        commands = session.exec(select(Outbox).where(Outbox.run_id == retry.id)).all()
        hops = session.exec(select(RunEvent.to_state).where(RunEvent.run_id == retry.id)).all()
        started = session.get(Run, retry.id)
    assert len(commands) == 1, [c.id for c in commands]
    assert sorted(hops) == ["pending", "queued", "waiting"]
    assert started is not None and started.state == RunState.queued


def test_two_workflow_runs_reaching_one_dependent_at_once_start_it_once(
    any_engine: Engine,
) -> None:
    # Two batches finish at the same moment; each settles in its own transaction and
    # reaches the flush (overlap skip): one flush runs, the other step is skipped.
    with session_scope(any_engine) as session:
        twice = {"policy": "allow", "max": 2}
        batch, _ = create_task(session, TaskCreate(name="batch", trigger="go", overlap=twice))
        after = [{"task": batch.id, "on": "success"}]
        flush, _ = create_task(session, TaskCreate(name="flush", depends_on=after))
        batches = [
            launch_run(session, batch, cause="trigger", reason="trigger go", hook=None)
            for _ in range(2)
        ]
        for run in batches:
            transition(session, run, RunState.succeeded, reason="reported complete")
    first_id, second_id = (run.id for run in batches)

    def settle(session: Session, run_id: str) -> None:
        own = session.get(Run, run_id)
        assert own is not None and settle_run(session, own, None)

    def settle_elsewhere() -> None:
        with session_scope(any_engine) as session:
            settle(session, second_id)

    # Let go once the second has counted the flush's active runs or waits for a lock;
    # its own claim of its batch run (a write) does not count: it precedes the count.
    race(
        any_engine,
        lambda first: settle(first, first_id),
        settle_elsewhere,
        "runs.state IN (",
        "the second settling to count the flush's runs or lock",
        writes=False,
    )
    with Session(any_engine) as session:
        steps = session.exec(select(Run).where(Run.task_id == flush.id)).all()
    states = sorted((r.state, r.reason) for r in steps)
    assert [s for s, _ in states] == ["pending", "skipped"], states
    assert states[1][1].endswith("(overlap skip)"), states


def test_a_report_releasing_a_held_run_and_the_workflow_pass_release_it_once(
    any_engine: Engine,
) -> None:
    """An external task's run in progress finished; its reporter reports on the next
    (held in the overlap queue, so the report releases it and completes it) while the
    workflow pass settles the finished one and would release the same run. The pass
    waits for the report and leaves the run be: it read the run as still held and wrote
    `queued` over the reported outcome, a final state changed."""
    hook = RunReady(Settings(), threading.Event())
    with session_scope(any_engine) as session:
        task, _ = create_task(
            session, TaskCreate(name="sign off", trigger="go", overlap={"policy": "queue"})
        )
        ahead, held = (
            launch_run(session, task, cause="trigger", reason="trigger go", hook=hook)
            for _ in range(2)
        )
        assert held.state == RunState.waiting
        transition(session, ahead, RunState.succeeded, reason="reported complete")
    task_id = task.id or 0

    def report(session: Session) -> None:
        update_task(session, task_id, TaskUpdate(status="complete"))

    def settle_elsewhere() -> None:
        with session_scope(any_engine) as session:
            own = session.get(Run, ahead.id)
            assert own is not None and settle_run(session, own, hook)

    race(
        any_engine,
        report,
        settle_elsewhere,
        "JOIN run_links",
        "the workflow pass to look for a held run or lock",
        writes=False,
    )
    with Session(any_engine) as session:
        released = session.get(Run, held.id)
        assert released is not None
        hops = session.exec(select(RunEvent.to_state).where(RunEvent.run_id == held.id)).all()
    assert released.state == RunState.succeeded
    assert sorted(hops) == ["pending", "succeeded", "waiting"]
