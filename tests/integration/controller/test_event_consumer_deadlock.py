"""An event batch whose transaction loses a deadlock on PostgreSQL is applied again at
once (store/conflicts.py): no outage is logged, the events are not held for the outage's
pause, and the run moves once.

The consumer's transaction moves the run, then mirrors it on its task's row. The rival
(a status report, the scheduling pass) holds the task's row, then wants the run's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from moved_runs import run_state, runs_moved
from pg_database import PgDatabase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from waiting import wait_until

from tme.bus import Delivery, open_bus
from tme.controller import event_consumer
from tme.controller.event_consumer import EventConsumer
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.models import Run, RunEvent
from tme.protocol import Event
from tme.schemas import TaskCreate

pytestmark = pytest.mark.external_service


@pytest.fixture
def engine(pg_database: PgDatabase) -> Iterator[Engine]:
    """An upgraded database whose connections look for a deadlock 20 ms into a lock
    wait (PostgreSQL's default: a second)."""
    with psycopg.connect(pg_database.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{pg_database.name}\" SET deadlock_timeout = '20ms'")
    engine = make_engine(pg_database.url())
    upgrade(engine)
    yield engine
    engine.dispose()


class Rival:
    """Holds the task's row, then wants the run's once the consumer moved it. It looks
    for a deadlock only after a minute, so the consumer, which blocks after it, finds
    the cycle and is the one PostgreSQL ends."""

    def __init__(self, url: str, task_id: int, run_id: str, wants_run: threading.Event) -> None:
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.conn.execute("SET deadlock_timeout = '1min'")
        self.pid = self.conn.info.backend_pid
        self.conn.execute("SELECT * FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
        self.run_id, self.wants_run = run_id, wants_run
        self.thread = threading.Thread(target=self._want_run)
        self.thread.start()

    def _want_run(self) -> None:
        self.wants_run.wait(10)
        self.conn.execute("SELECT * FROM runs WHERE id = %s FOR UPDATE", (self.run_id,))
        self.conn.commit()

    def blocked(self, engine: Engine) -> bool:
        with engine.connect() as connection:
            blockers = connection.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid})
            return bool(blockers.scalar_one())

    def close(self) -> None:
        self.thread.join(10)
        self.conn.close()


def _stall_first_task_mirror(
    engine: Engine, moved_run: threading.Event, rival_blocked: threading.Event
) -> None:
    """The consumer's first try: once it moved the run, wait for the rival to want the
    run's row before mirroring it on the task's row (which the rival holds)."""
    armed = [True]

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE runs"):
            moved_run.set()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE tasks"):
            armed[0] = False
            assert rival_blocked.wait(10)

    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "before_cursor_execute", before)


def test_an_event_batch_that_loses_a_deadlock_is_applied_again_at_once(
    engine: Engine,
    pg_database: PgDatabase,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Held as an outage, the batch would wait a minute before its next try.
    monkeypatch.setattr(event_consumer, "OUTAGE_PAUSE_MIN_S", 60.0)
    caplog.set_level(logging.INFO)
    site = f"site-{uuid.uuid4().hex[:10]}"
    target = {"site": site, "agent": "skid-a", "device": "pump1"}
    read = TaskCreate(name="read", op="modbus.read", target=target, params={"point": "level"})
    (run_id,) = runs_moved(engine, [read])
    with Session(engine) as session:
        task_id = session.exec(select(Run.task_id).where(Run.id == run_id)).one()
    accepted = Event(command_id=run_id, type="accepted", site=site, agent="skid-a")
    consumer = EventConsumer(engine, open_bus(f"memory://deadlock-{site}"))
    moved_run, rival_blocked = threading.Event(), threading.Event()
    _stall_first_task_mirror(engine, moved_run, rival_blocked)
    rival = Rival(pg_database.url(), task_id, run_id, moved_run)

    def watch() -> None:
        wait_until(lambda: rival.blocked(engine), what="the rival waiting for the run")
        rival_blocked.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    outcomes: list[Exception | None] = []
    applying = threading.Thread(
        target=lambda: outcomes.extend(
            consumer.handle_batch([Delivery(accepted.to_json(), f"{site}.skid-a.accepted")])
        )
    )
    applying.start()
    try:
        applying.join(30)  # far below the outage's minute
        assert not applying.is_alive(), "the batch is held as if the database were down"
    finally:
        consumer.stop()
        applying.join(10)
        watcher.join(10)
        rival.close()
    assert outcomes == [None]
    assert rival_blocked.is_set()  # the cycle was closed: the first try lost it
    assert not consumer.outage.failing
    assert "lost a conflict with concurrent work (try 1 of 4)" in caplog.text
    assert run_state(engine, run_id) == "accepted"
    with Session(engine) as session:
        hops = session.exec(select(RunEvent.to_state).where(col(RunEvent.run_id) == run_id))
        assert list(hops).count("accepted") == 1
