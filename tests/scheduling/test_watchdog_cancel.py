"""The controller's watchdog and cancel, on the store: silent agents, writes, queued runs."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.config import Settings
from tme.controller.event_apply import apply_event, apply_presence
from tme.controller.outbox import queue_run
from tme.controller.retries import backoff_s
from tme.controller.run_ready import RunReady
from tme.controller.services.cancel import cancel_run
from tme.controller.services.runs import record_hop
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Outbox, Run, RunEvent, utcnow
from tme.controller.watchdog import MAX_HOLD_S, check_timeouts
from tme.protocol import Command, Event, Presence
from tme.schemas import Retries, TaskCreate

TARGET = {"site": "s1", "agent": "a1", "device": "pump1"}


def queued(session: Session, **fields: object) -> Run:
    data = TaskCreate.model_validate({"name": "t", "op": "noop", "target": TARGET, **fields})
    task, _ = create_task(session, data, on_run_ready=lambda s, r, t: queue_run(s, r, t, 30, 60))
    run = session.get(Run, task.latest_run_id)
    assert run is not None
    return run


def test_silent_running_read_is_timed_out_and_a_late_result_kept(session: Session) -> None:
    run = queued(session, timeout_s=1)
    record_hop(session, run, "running", source="agent", at=utcnow() - timedelta(seconds=10))
    assert check_timeouts(session, utcnow(), 30, grace_s=1) == 1
    assert run.state == "timed_out" and "watchdog" in run.reason
    record_hop(session, run, "succeeded", source="agent", result={"ok": 1})
    assert run.state == "timed_out" and run.result == {"late_result": {"ok": 1}}


def test_an_external_task_has_only_the_timeout_it_was_given(session: Session) -> None:
    """A person reports an external task when it is done; the default timeout, made for
    machines, would time out a walk to a valve (and refuse its `complete` report)."""
    runs = []
    for fields in ({}, {"timeout_s": 60}):
        data = TaskCreate.model_validate({"name": "inspect valve 3", "op": "external", **fields})
        task, _ = create_task(session, data)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        record_hop(session, run, "running", source="api", at=utcnow() - timedelta(minutes=10))
        runs.append(run)
    assert check_timeouts(session, utcnow(), 30, grace_s=1) == 1
    assert [run.state for run in runs] == ["running", "timed_out"]


def test_silent_write_is_lost_not_timed_out(session: Session) -> None:
    params = {"point": "speed_setpoint", "value": 5}
    data = TaskCreate.model_validate(
        {"name": "w", "op": "modbus.write", "target": TARGET, "params": params, "timeout_s": 1}
    )
    task, _ = create_task(session, data, on_run_ready=lambda s, r, t: queue_run(s, r, t, 30, 60))
    run = session.get(Run, task.latest_run_id)
    assert run is not None
    record_hop(session, run, "running", source="agent", at=utcnow() - timedelta(seconds=10))
    check_timeouts(session, utcnow(), 30, grace_s=1)
    assert run.state == "lost" and "unknown" in run.reason


def test_queue_timeout_expires_an_unaccepted_run(session: Session) -> None:
    run = queued(session)
    record_hop(session, run, "dispatched")
    check_timeouts(session, utcnow() + timedelta(seconds=120), 30, grace_s=1)
    assert run.state == "expired"


def test_queue_timeout_names_a_target_agent_never_seen(session: Session) -> None:
    """A typo in the agent's name, or one not provisioned: the run waited for nothing."""
    unseen = queued(session)
    apply_presence(session, Presence(site="s1", agent="a2", state="offline"))
    known = queued(session, target={**TARGET, "agent": "a2"})
    for run in (unseen, known):
        record_hop(session, run, "dispatched")
    check_timeouts(session, utcnow() + timedelta(seconds=120), 30, grace_s=1)
    assert unseen.state == known.state == "expired"
    assert unseen.reason.endswith("(agent 'a1' has never been seen at site 's1')")
    assert known.reason == "queue timeout: no agent accepted it by not_after"


def linked(session: Session, **fields: object) -> Run:
    """A queued run as the controller starts one: linked, with its task's deadline."""
    data = TaskCreate.model_validate({"name": "t", "op": "noop", "target": TARGET, **fields})
    task, _ = create_task(session, data, on_run_ready=RunReady(Settings(), threading.Event()))
    session.commit()
    run = session.get(Run, task.latest_run_id)
    assert run is not None
    return run


def test_a_run_past_its_total_deadline_is_timed_out(session: Session) -> None:
    run = linked(session, deadline_s=60, timeout_s=3600)
    record_hop(session, run, "running", source="agent")  # its own timeout is far off
    done = linked(session, deadline_s=60)
    record_hop(session, done, "succeeded", source="agent")
    assert check_timeouts(session, utcnow() + timedelta(seconds=30), 3600) == 0
    assert check_timeouts(session, utcnow() + timedelta(seconds=90), 3600) == 1
    assert run.state == "timed_out" and "deadline" in run.reason
    assert done.state == "succeeded"


def test_a_watchdog_pass_reads_the_active_runs_not_every_run(
    session: Session, engine: Engine
) -> None:
    """Each pass runs twice a second for the life of the controller: none of its queries
    may read the whole runs table, which grows with every run ever kept (SQLite plans)."""
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    linked(session, deadline_s=60)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        check_timeouts(session, utcnow(), 30)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 3  # queue timeout, run timeout, total deadline
    connection = session.connection()
    for statement, params in statements:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
        scans = [row[-1] for row in plan if str(row[-1]).startswith("SCAN")]
        assert scans == [], f"{statement} reads a whole table: {scans}"


def test_cancel_of_a_queued_run_is_immediate_and_withdraws_the_command(session: Session) -> None:
    run = queued(session)
    cancel_run(session, run.id)
    assert run.state == "canceled"
    rows = session.exec(select(Outbox)).all()
    command_row = next(r for r in rows if r.run_id == run.id)
    assert command_row.published_at is not None and "canceled" in command_row.last_error
    stop = [Command.from_json(r.body) for r in rows if r.run_id != run.id]
    assert [(c.op, c.params) for c in stop] == [("cancel", {"command_id": run.id})]


def test_cancel_of_a_running_run_asks_the_agent_and_force_marks_it(session: Session) -> None:
    run = queued(session)
    record_hop(session, run, "running", source="agent")
    cancel_run(session, run.id)
    assert run.state == "running"  # the agent reports when it stopped
    cancel_run(session, run.id, force=True)
    assert run.state == "canceled"
    events = session.exec(select(RunEvent).where(RunEvent.run_id == run.id)).all()
    assert "force-canceled" in events[-1].reason


def test_cancel_of_a_run_without_an_agent_is_immediate(session: Session) -> None:
    """An external task's run has nobody to send a stop to: it is canceled at once."""
    data = TaskCreate.model_validate({"name": "inspect valve 3", "op": "external"})
    task, _ = create_task(session, data)
    run = session.get(Run, task.latest_run_id)
    assert run is not None
    record_hop(session, run, "running", source="api")
    cancel_run(session, run.id)
    assert run.state == "canceled" and "no agent to ask" in run.reason
    assert session.exec(select(Outbox)).all() == []  # no stop request to nobody


def test_backoff_grows_exponentially_within_its_cap_and_jitter() -> None:
    policy = Retries(max=5, backoff_s=1, factor=2, backoff_max_s=5, jitter=0.1)
    top = SimpleNamespace(uniform=lambda a, b: b)  # the top of the jitter band
    waits = [backoff_s(policy, n, top) for n in (1, 2, 3, 4, 5)]  # type: ignore[arg-type]
    assert [round(w, 2) for w in waits] == [1.1, 2.2, 4.4, 5.0, 5.0]  # the cap holds
    bottom = SimpleNamespace(uniform=lambda a, b: a)
    waits = [backoff_s(policy, n, bottom) for n in (3, 4)]  # type: ignore[arg-type]
    assert [round(w, 2) for w in waits] == [3.6, 4.5]  # spread below the cap


def test_a_write_is_retried_only_when_the_agent_never_started_it() -> None:
    from tme.controller.retries import retry_refusal
    from tme.controller.store.models import Task
    from tme.controller.store.workflow_models import RunLink

    task = Task(name="w", op="modbus.write")
    policy = Retries(max=3)
    failed = Run(task_id=1, state="failed")
    link = RunLink(run_id=failed.id, workflow_id=failed.id, first_run_id=failed.id)
    assert "never started" in str(retry_refusal(task, failed, link, policy))
    link.not_started = True
    assert retry_refusal(task, failed, link, policy) is None
    for state in ("rejected", "lost", "expired"):
        assert retry_refusal(task, Run(task_id=1, state=state), link, policy) is not None
    # a write declared repeatable (an absolute setpoint) is retried whatever reached it
    link.not_started = False
    assert retry_refusal(task, failed, link, Retries(max=3, repeatable=True)) is None
    assert retry_refusal(task, Run(task_id=1, state="rejected"), link, policy) is not None


def test_the_answers_to_a_stop_request_are_not_warned_of_as_unknown_runs(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop request is a command of its own (no run); its gateway says it delivered it
    and its agent answers it. Each cancel logged two or three warnings "event ... for
    unknown run ... dropped", the warning that points at a stray or forged event."""
    run = queued(session)
    record_hop(session, run, "running", source="agent")
    cancel_run(session, run.id)
    (stop,) = [
        Command.from_json(r.body) for r in session.exec(select(Outbox)) if r.run_id != run.id
    ]
    caplog.set_level(logging.DEBUG, logger="tme.events")
    for type_ in ("delivered", "succeeded"):
        apply_event(session, Event(command_id=stop.id, type=type_, site="s1", agent="a1"))
    apply_event(session, Event(command_id="not-a-command", type="succeeded", site="s1", agent="a1"))
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == ["event succeeded for unknown run not-a-command dropped"]


def test_a_stop_holding_its_safe_values_is_timed_from_the_end_of_its_hold(
    session: Session,
) -> None:
    """Its agent said (a progress event) it holds the safe values 30 s before writing them
    again, longer than the stop's 10 s timeout: the watchdog waits for the hold and the
    timeout after it, as the agent does, then steps in if the agent stays silent."""
    run = queued(session, timeout_s=10)
    record_hop(session, run, "running", source="agent", at=utcnow() - timedelta(seconds=20))
    first = {"first_pass": {"written": {"run": False}, "not_written": {}, "hold_s": 30.0}}
    session.flush()
    progress = Event(command_id=run.id, type="progress", site="s1", agent="a1", result=first)
    apply_event(session, progress)
    session.expire_all()
    run = session.get(Run, run.id)
    assert run is not None and run.result == first
    assert check_timeouts(session, utcnow(), 30, grace_s=1) == 0  # 20 s in: holding
    assert run.state == "running"
    later = utcnow() + timedelta(seconds=30 + 10 + 2)  # past the hold, its timeout, the grace
    assert check_timeouts(session, later, 30, grace_s=1) == 1
    assert run.state == "timed_out"


@pytest.mark.parametrize("hold", [None, "30", True, float("nan"), -5, 1e9])
def test_a_hold_the_watchdog_cannot_read_gives_no_time(session: Session, hold: object) -> None:
    """Beside a run whose hold of 30 s keeps it going, one whose hold is not a number, or
    not one a stop could mean (a hold of years is capped at MAX_HOLD_S), times out."""
    runs = []
    for said in (30.0, hold):
        run = queued(session, timeout_s=10)
        record_hop(session, run, "running", source="agent", at=utcnow() - timedelta(seconds=20))
        run.result = {"first_pass": {"hold_s": said}}
        session.add(run)
        runs.append(run)
    now = utcnow() if hold != 1e9 else utcnow() + timedelta(seconds=MAX_HOLD_S)
    assert check_timeouts(session, now, 30, grace_s=1) == (1 if hold != 1e9 else 2)
    assert runs[1].state == "timed_out"


def test_a_device_stop_goes_out_before_the_stop_requests_of_its_runs(session: Session) -> None:
    """The stop and the stop requests of the device's runs go at the same priority, in
    the order their outbox rows were written: the stop first, so that at the agent it
    cancels the running write and the one waiting behind it together. A stop request
    arriving first ended the running write alone, and the waiting one ran before the
    stop came."""
    from tme.controller.dispatcher import UNPUBLISHED
    from tme.controller.services.device_stop import stop_device
    from tme.controller.store.models import Device

    points = [{"name": "speed_setpoint", "kind": "point", "type": "uint16", "access": "rw",
               "safe_value": 0}]  # fmt: skip
    device = Device(site="s1", agent="a1", name="pump1", points=points)
    session.add(device)
    params = {"point": "speed_setpoint", "value": 5}
    runs = []
    for state in ("running", "accepted"):
        data = TaskCreate.model_validate(
            {"name": "w", "op": "modbus.write", "target": TARGET, "params": params}
        )
        task, _ = create_task(
            session, data, on_run_ready=lambda s, r, t: queue_run(s, r, t, 30, 60)
        )
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        record_hop(session, run, "dispatched")
        record_hop(session, run, state, source="agent")
        runs.append(run)
    for row in session.exec(select(Outbox)):  # both writes went out
        row.published_at = utcnow()
        session.add(row)
    hook = lambda s, r, t: queue_run(s, r, t, 30, 60)  # noqa: E731
    stopped = stop_device(session, device, "leak", "alice", on_run_ready=hook)
    session.flush()
    assert sorted(stopped.canceled_runs) == sorted(run.id for run in runs)
    ops = [Command.from_json(row.body).op for row in session.execute(UNPUBLISHED)]
    assert ops == ["device.stop", "cancel", "cancel"]
