"""Settling finished runs in a batch: a run whose settling only marks its link (an
outcome never retried, a task without dependents or held runs) is settled by one
statement for the batch, without loading it; the others are settled one by one.
The event consumer settles such runs in the transaction that finished them and
leaves (and wakes the workflow pass for) only the others."""

from __future__ import annotations

import threading

from moved_runs import runs_moved
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tme.bus.base import Delivery
from tme.bus.registry import open_bus
from tme.config import Settings
from tme.controller.event_apply import Applied, apply_messages
from tme.controller.event_consumer import EventConsumer
from tme.controller.run_ready import RunReady
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import settle_pending
from tme.protocol import Event
from tme.schemas import TaskCreate
from tme.states import RunState


def _finished_runs(engine: Engine, count: int, state: RunState, **fields: object) -> list[str]:
    """`count` external tasks started at once, their runs moved to `state`."""
    items = [TaskCreate.model_validate({"name": f"report {i}", **fields}) for i in range(count)]
    return runs_moved(engine, items, RunState.running, state)


def _settle_counting(engine: Engine) -> tuple[int, list[str]]:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        words = statement.split()
        verb = words[0].upper()
        table = words[words.index("FROM") + 1] if verb == "SELECT" else words[1]
        statements.append(f"{verb} {table}")

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope(engine) as session:
            settled = settle_pending(session, None)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return settled, statements


def _unsettled(engine: Engine, run_ids: list[str]) -> list[str]:
    with session_scope(engine) as session:
        query = select(RunLink.run_id).where(col(RunLink.run_id).in_(run_ids))
        return list(session.exec(query.where(col(RunLink.settled).is_(False))))


def test_plain_runs_settle_in_one_statement_however_many(engine: Engine) -> None:
    assert _settle_counting(engine)[0] == 0  # the workflow cursor exists from here on
    few = _finished_runs(engine, 3, RunState.succeeded)
    settled_few, statements_few = _settle_counting(engine)
    many = _finished_runs(engine, 30, RunState.succeeded)
    settled_many, statements_many = _settle_counting(engine)
    assert (settled_few, settled_many) == (3, 30)
    assert statements_few == statements_many
    assert statements_many.count("UPDATE run_links") == 1
    assert "SELECT tasks" not in statements_many  # no run or task loaded to settle it
    assert _unsettled(engine, few + many) == []
    assert _settle_counting(engine)[0] == 0  # settled once


def test_a_run_that_may_be_retried_is_settled_with_its_retry(engine: Engine) -> None:
    """A failed run of a task with retries goes the full way: its retry is planned."""
    plain = _finished_runs(engine, 2, RunState.succeeded)
    failed = _finished_runs(engine, 1, RunState.failed, retries={"max": 2})
    settled, statements = _settle_counting(engine)
    assert "SELECT tasks" in statements  # the failed run's task: its retry policy
    assert settled == 3 and _unsettled(engine, plain + failed) == []
    with session_scope(engine) as session:
        (task_id,) = session.exec(select(Run.task_id).where(Run.id == failed[0]))
        attempts = sorted(session.exec(select(Run.attempt).where(Run.task_id == task_id)))
    assert attempts == [1, 2]


# --- settling in the transaction that applies the final event ----------------------


def _write_tasks(engine: Engine, count: int, **fields: object) -> list[tuple[int, str]]:
    """`count` queued modbus writes for agent a1 of site s1: (task id, run id) each."""
    target = {"site": "s1", "agent": "a1", "device": "pump1"}
    write = {"op": "modbus.write", "target": target, "params": {"point": "speed", "value": 1}}
    items = [TaskCreate.model_validate({"name": f"w{i}", **write, **fields}) for i in range(count)]
    with session_scope(engine) as session:
        made = create_tasks(session, items, on_run_ready=RunReady(Settings(), threading.Event()))
        return [(task.id or 0, str(task.latest_run_id)) for task, _ in made]


def _finish(engine: Engine, run_id: str, kind: str, **fields: object) -> Applied:
    started = Event(command_id=run_id, type="started", site="s1", agent="a1")
    final = Event(command_id=run_id, type=kind, site="s1", agent="a1", **fields)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        return apply_messages(session, [started, final])


def test_a_plain_run_is_settled_by_the_event_that_finished_it(engine: Engine) -> None:
    """No workflow pass needed: the consumer's transaction marks its link settled."""
    ((_, run_id),) = _write_tasks(engine, 1)
    applied = _finish(engine, run_id, "succeeded", result={"value": 1})
    assert applied.to_settle == 0
    assert _unsettled(engine, [run_id]) == []


def test_runs_with_more_to_do_are_left_for_the_workflow_pass(engine: Engine) -> None:
    """A retried outcome, a task with a dependent: counted in to_settle, settled by the
    workflow pass (which plans the retry)."""
    ((predecessor, after_id),) = _write_tasks(engine, 1)
    dependent = {"name": "flush", "depends_on": [{"task": predecessor, "on": "success"}]}
    with session_scope(engine) as session:
        create_tasks(session, [TaskCreate.model_validate(dependent)], on_run_ready=None)
    ((retried, failed_id),) = _write_tasks(engine, 1, retries={"max": 2})
    assert _finish(engine, after_id, "succeeded").to_settle == 1
    assert _finish(engine, failed_id, "failed", not_started=True).to_settle == 1
    assert sorted(_unsettled(engine, [after_id, failed_id])) == sorted([after_id, failed_id])
    with session_scope(engine) as session:
        assert settle_pending(session, None) == 2
    with session_scope(engine) as session:
        attempts = sorted(session.exec(select(Run.attempt).where(Run.task_id == retried)))
    assert attempts == [1, 2]  # a write that never started is retried


def test_never_started_is_recorded_with_the_final_event(engine: Engine) -> None:
    """The agent's "never started" lands in the same transaction as the failure, so no
    workflow pass can settle the run before it is known (a write would not be retried)."""
    ((_, quiet), (_, told)) = _write_tasks(engine, 2, retries={"max": 2})
    _finish(engine, quiet, "failed")
    _finish(engine, told, "failed", not_started=True)
    with session_scope(engine) as session:
        flags = dict(session.exec(select(RunLink.run_id, RunLink.not_started)).all())
    assert (flags[quiet], flags[told]) == (False, True)


def test_the_consumer_wakes_the_workflow_pass_only_for_what_is_left(engine: Engine) -> None:
    ((_, plain), (_, retried)) = _write_tasks(engine, 2, retries={"max": 2})
    consumer = EventConsumer(engine, open_bus("memory://settle"))  # the bus is not used here
    woken: list[int] = []
    consumer.on_to_settle = lambda: woken.append(1)

    def deliver(run_id: str, kind: str) -> None:
        body = Event(command_id=run_id, type=kind, site="s1", agent="a1").to_json()
        assert consumer.handle_batch([Delivery(body=body, routing_key="s1.a1")]) == [None]

    deliver(plain, "succeeded")
    assert woken == []
    deliver(retried, "failed")
    assert woken == [1]


def test_a_failed_run_of_a_task_with_retries_says_why_it_is_not_retried(engine: Engine) -> None:
    """A write that may have reached the device is not retried: `retries: 2` did nothing,
    and nothing said why. A task without retries needs no word; a long reason is cut to
    keep the note."""
    ((_, maybe_sent),) = _write_tasks(engine, 1, retries={"max": 2})
    ((_, long_reason),) = _write_tasks(engine, 1, retries={"max": 2})
    ((_, no_retries),) = _write_tasks(engine, 1)
    _finish(engine, maybe_sent, "failed", reason="write 'speed' (unit 1): no answer in time")
    _finish(engine, long_reason, "timed_out", reason="x" * 3000)
    _finish(engine, no_retries, "failed", reason="write 'speed' (unit 1): no answer in time")
    with session_scope(engine) as session:
        assert settle_pending(session, None) == 3
    with session_scope(engine) as session:
        reasons = dict(session.exec(select(Run.id, Run.reason)).all())
    why = (
        "not retried: a write is retried only when the agent reports it never started, "
        "and this one may have reached the device"
    )
    assert reasons[maybe_sent] == f"write 'speed' (unit 1): no answer in time; {why}"
    assert reasons[long_reason].endswith(f"xxx; {why}") and len(reasons[long_reason]) == 2000
    assert reasons[no_retries] == "write 'speed' (unit 1): no answer in time"
    assert len(reasons) == 3  # and none of them was retried
