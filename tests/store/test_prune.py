"""Retention (controller/store/prune.py) on both databases: what is old and no longer
needed goes, with its child rows; what a task, a workflow or the audit log still
needs stays; a dry run counts the same rows and deletes none."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import select
from waiting import wait_until

from tme.controller.notifications.models import NotificationDelivery
from tme.controller.services.launch import link_run
from tme.controller.services.runs import start_run, transition
from tme.controller.services.tasks import create_tasks
from tme.controller.store import prune as prune_module
from tme.controller.store.db import session_scope
from tme.controller.store.models import IdempotencyKey, Outbox, Run, RunLog, Task, utcnow
from tme.controller.store.prune import Pruner, prune
from tme.controller.store.security_models import ApiToken, AuditEntry, User
from tme.controller.store.workflow_models import RunLink, ScheduleSlot, WorkflowCancel
from tme.controller.workflow import settle_pending
from tme.schemas import TaskCreate
from tme.states import RunState

KEEP = timedelta(days=90)
OLD = timedelta(days=100)  # finished this long ago: past the cutoff


@pytest.fixture(autouse=True)
def _no_rows_of_other_tests(engine: Engine) -> Iterator[None]:
    """The PostgreSQL fixture empties the run and task tables only."""
    with engine.begin() as connection:
        for model in (NotificationDelivery, ApiToken, User):
            connection.execute(delete(model))
    yield


def _task(engine: Engine, name: str, **fields: object) -> int:
    item = TaskCreate.model_validate({"name": name, **fields})
    with session_scope(engine) as session:
        ((task, _),) = create_tasks(session, [item], on_run_ready=None)
        return task.id or 0


def _run(engine: Engine, task_id: int, state: RunState | None, workflow: str | None = None) -> str:
    """A new run of the task (its latest), linked in `workflow` (its own by default),
    moved to `state` (None: left running)."""
    with session_scope(engine) as session:
        task = session.get_one(Task, task_id)
        run = start_run(session, task, reason="test", source="test")
        link_run(session, run, cause="manual", workflow_id=workflow)
        transition(session, run, RunState.running)
        if state is not None:
            transition(session, run, state)
        session.add(RunLog(run_id=run.id, line="a log line"))
        return run.id


def _settle(engine: Engine) -> None:
    with session_scope(engine) as session:
        settle_pending(session, None)


def _age(engine: Engine, run_id: str, ago: timedelta) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Run).where(Run.id == run_id).values(finished_at=utcnow() - ago)  # type: ignore[arg-type]
        )


def _an_old_run_and_the_latest(engine: Engine, name: str) -> str:
    """A task with two finished, settled runs: the old one (returned) may be pruned."""
    task_id = _task(engine, name)
    old = _run(engine, task_id, RunState.succeeded)
    _run(engine, task_id, RunState.succeeded)
    _settle(engine)
    _age(engine, old, OLD)
    return old


def _run_ids(engine: Engine) -> set[str]:
    with session_scope(engine) as session:
        return set(session.exec(select(Run.id)).all())


def _history(engine: Engine) -> dict[str, str]:
    """Runs of every kind prune must tell apart, by what each is."""
    runs: dict[str, str] = {}
    done = _task(engine, "read tank level")
    runs["old"] = _run(engine, done, RunState.succeeded)
    runs["old failed"] = _run(engine, done, RunState.failed)
    runs["recent"] = _run(engine, done, RunState.succeeded)
    runs["latest"] = _run(engine, done, RunState.succeeded)

    # A final run whose link the workflow engine has not settled yet.
    unsettled = _task(engine, "unsettled")
    runs["unsettled"] = _run(engine, unsettled, RunState.succeeded)
    _run(engine, unsettled, RunState.succeeded)  # its latest: a later run

    # A final, settled step of a workflow run still in progress: its next step runs.
    flow = _task(engine, "start pump")
    runs["step of an open workflow"] = _run(engine, flow, RunState.succeeded)
    _run(engine, flow, RunState.succeeded)  # its latest: a later run
    then = _task(engine, "then flush")
    runs["open step"] = _run(engine, then, None, workflow=runs["step of an open workflow"])
    _run(engine, then, RunState.succeeded)  # the task's latest

    # A run not final (in practice it has no finish time; this one is given one).
    active = _task(engine, "active")
    runs["running"] = _run(engine, active, None)
    _run(engine, active, RunState.succeeded)

    _settle(engine)
    with engine.begin() as connection:  # the links as the cases need them
        for what, settled in (("unsettled", False), ("running", True)):
            link = RunLink.run_id == runs[what]  # type: ignore[arg-type]
            connection.execute(update(RunLink).where(link).values(settled=settled))
    for what, run_id in runs.items():
        _age(engine, run_id, timedelta(days=1) if what == "recent" else OLD)
    return runs


def _other_rows(engine: Engine) -> None:
    """Two of each other kind of row: one old enough to go, one that stays."""
    now = utcnow()
    old = now - OLD
    task_id = _task(engine, "scheduled")
    kept = _run(engine, task_id, RunState.canceled)  # the task's latest run: kept
    with session_scope(engine) as session:
        # the cancel of a workflow run whose runs are all gone goes, one with runs stays
        for workflow_id, at in (("gone", old), (kept, old), ("lately", now)):
            session.add(WorkflowCancel(workflow_id=workflow_id, canceled_by="op", canceled_at=at))
        session.add(Outbox(run_id="gone", site="s", body="{}", published_at=old, created_at=old))
        session.add(Outbox(run_id="unsent", site="s", body="{}", created_at=old))
        session.add(Outbox(run_id="fresh", site="s", body="{}", published_at=now))
        session.add(ScheduleSlot(task_id=task_id, slot_at=old, run_id=None))
        session.add(ScheduleSlot(task_id=task_id, slot_at=now, run_id=None))
        session.add(IdempotencyKey(key="old", request_hash="h", task_id=task_id, created_at=old))
        session.add(IdempotencyKey(key="new", request_hash="h", task_id=task_id))
        user = User(username="op", password_hash="x", role="operator")
        session.add(user)
        session.flush()
        ended = {"user_id": user.id or 0, "role": "operator", "secret_hash": "h", "name": "t"}
        session.add(ApiToken(key_id="s-expired", kind="session", expires_at=old, **ended))
        session.add(ApiToken(key_id="s-revoked", kind="session", revoked_at=old, **ended,
                             expires_at=now + timedelta(days=1)))  # fmt: skip
        session.add(ApiToken(key_id="s-live", kind="session", expires_at=now + OLD, **ended))
        session.add(ApiToken(key_id="api-expired", kind="api", expires_at=old, **ended))
        for key, status, at in (
            ("sent", "delivered", old),
            ("given up", "failed", old),
            ("pending", "pending", old),
            ("sent lately", "delivered", now),
        ):
            session.add(_delivery(key, status, at))
        session.add(AuditEntry(action="test", hash="h", at=old))


def _delivery(key: str, status: str, at: datetime) -> NotificationDelivery:
    delivered = at if status == "delivered" else None
    fields = {"rule": "r", "channel": "webhook", "target": "http://x", "event": "failed"}
    return NotificationDelivery(
        dedup_key=key, status=status, next_attempt_at=at, delivered_at=delivered, **fields
    )


def test_old_settled_runs_go_with_their_rows_and_needed_ones_stay(
    engine: Engine, count: Callable[[str], int]
) -> None:
    runs = _history(engine)
    with session_scope(engine) as session:  # the old run's command, published
        session.add(Outbox(run_id=runs["old"], site="s", body="{}", published_at=utcnow()))
    before = {t: count(t) for t in ("runs", "run_events", "run_logs", "run_links")}

    counts = prune(engine, KEEP)

    gone = {runs["old"], runs["old failed"]}
    assert _run_ids(engine) & gone == set()
    kept = {what for what, run_id in runs.items() if run_id in _run_ids(engine)}
    assert kept == set(runs) - {"old", "old failed"}
    assert counts["runs"] == 2
    assert counts["run_events"] == 2 * 3  # pending, running and the final state each
    assert counts["run_logs"] == 2 and counts["run_links"] == 2 and counts["outbox"] == 1
    for table, rows in before.items():
        assert count(table) == rows - counts[table], table
    assert prune(engine, KEEP)["runs"] == 0  # nothing more to do


def test_other_tables_lose_only_their_old_rows(engine: Engine, count: Callable[[str], int]) -> None:
    _other_rows(engine)
    counts = prune(engine, KEEP)
    assert {t: n for t, n in counts.items() if not t.startswith("run")} == {
        "outbox": 1,
        "schedule_slots": 1,
        "idempotency_keys": 1,
        "dashboard_sessions": 2,
        "notification_deliveries": 2,
        "workflow_cancels": 1,
    }
    with session_scope(engine) as session:
        assert set(session.exec(select(Outbox.run_id)).all()) == {"unsent", "fresh"}
        assert set(session.exec(select(ApiToken.key_id)).all()) == {"s-live", "api-expired"}
        assert set(session.exec(select(NotificationDelivery.dedup_key)).all()) == {
            "pending",
            "sent lately",
        }
        assert session.exec(select(IdempotencyKey.key)).all() == ["new"]
        cancels = set(session.exec(select(WorkflowCancel.workflow_id)).all())
        assert "gone" not in cancels and "lately" in cancels and len(cancels) == 2
    assert count("schedule_slots") == 1
    assert count("audit_log") == 1  # never pruned: its hash chain


def test_a_slot_within_the_longest_misfire_grace_stays(engine: Engine) -> None:
    task_id = _task(engine, "every second")
    with session_scope(engine) as session:
        session.add(ScheduleSlot(task_id=task_id, slot_at=utcnow() - timedelta(days=2)))
    assert prune(engine, timedelta(days=1))["schedule_slots"] == 0
    assert prune(engine, timedelta(days=1), now=utcnow() + timedelta(days=7))["schedule_slots"]


def test_a_dry_run_counts_the_same_rows_and_deletes_none(
    engine: Engine, count: Callable[[str], int]
) -> None:
    runs = _history(engine)
    with session_scope(engine) as session:
        session.add(Outbox(run_id=runs["old"], site="s", body="{}", published_at=utcnow()))
    _other_rows(engine)
    tables = ("runs", "run_events", "run_logs", "run_links", "outbox", "schedule_slots")
    before = {t: count(t) for t in tables}

    counted = prune(engine, KEEP, dry_run=True)

    assert {t: count(t) for t in tables} == before
    assert counted == prune(engine, KEEP)
    assert counted["runs"] == 2 and counted["outbox"] == 2


def test_chunks_are_bounded_and_all_old_runs_go(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prune_module, "CHUNK", 2)
    task_id = _task(engine, "often")
    old = [_run(engine, task_id, RunState.succeeded) for _ in range(5)]
    _run(engine, task_id, RunState.succeeded)  # the latest
    _settle(engine)
    for run_id in old:
        _age(engine, run_id, OLD)
    assert prune(engine, KEEP)["runs"] == 5
    assert len(_run_ids(engine)) == 2  # the task's first run (recent) and its latest


def test_a_stop_ends_the_work_between_chunks(engine: Engine) -> None:
    old = _an_old_run_and_the_latest(engine, "stopped")
    stop = threading.Event()
    stop.set()
    assert prune(engine, KEEP, stop=stop)["runs"] == 0
    assert old in _run_ids(engine)


def test_the_pruner_prunes_in_its_thread_and_stops(engine: Engine) -> None:
    old = _an_old_run_and_the_latest(engine, "background")
    idle = Pruner(engine, KEEP, first_s=0, every_s=0.01, should_prune=lambda: False)
    pruner = Pruner(engine, KEEP, first_s=0, every_s=3600)
    idle.start()
    pruner.start()
    try:
        wait_until(lambda: pruner.passes == 1, what="a pruning pass")
        assert old not in _run_ids(engine)
    finally:
        pruner.stop()
        idle.stop()
    assert idle.passes == 0
    assert not any(t.name == "tme-prune" for t in threading.enumerate())


def test_the_controller_prunes_only_when_retention_is_set(engine: Engine) -> None:
    from tme.bus import open_bus
    from tme.config import Settings
    from tme.controller.runtime import ControllerRuntime

    bus = open_bus("memory://")
    bus.start()
    try:
        assert ControllerRuntime(Settings(), engine, bus).pruner is None  # 0: keep all
        settings = Settings.model_validate({"database": {"retention_days": 30}})
        runtime = ControllerRuntime(settings, engine, bus)
        assert runtime.pruner is not None and runtime.pruner.keep == timedelta(days=30)
        runtime.start()
        try:
            assert any(t.name == "tme-prune" for t in threading.enumerate())
        finally:
            runtime.stop()
        assert not any(t.name == "tme-prune" for t in threading.enumerate())
    finally:
        bus.stop()
