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

import pytest
from deadlocks import Rival, stall_first_try, upgraded_engine
from moved_runs import run_state, runs_moved
from pg_database import PgDatabase
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.bus import Delivery, open_bus
from tme.controller import event_consumer
from tme.controller.event_consumer import EventConsumer
from tme.controller.store.models import Run, RunEvent
from tme.protocol import Event
from tme.schemas import TaskCreate

pytestmark = pytest.mark.external_service


@pytest.fixture
def engine(pg_database: PgDatabase) -> Iterator[Engine]:
    yield from upgraded_engine(pg_database)


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
    # The rival holds the task's row, then wants the run's once the consumer moved the
    # run; the consumer mirrors the run on its task only once the rival waits.
    moved_run = threading.Event()
    rival = Rival(
        pg_database.url(),
        ("SELECT * FROM tasks WHERE id = %s FOR UPDATE", (task_id,)),
        ("SELECT * FROM runs WHERE id = %s FOR UPDATE", (run_id,)),
        moved_run,
    )
    rival_blocked = rival.watch(engine)
    stall_first_try(
        engine,
        lambda sql: sql.startswith("UPDATE runs"),
        lambda sql: sql.startswith("UPDATE tasks"),
        moved_run,
        rival_blocked,
    )
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
        rival.close()
    assert outcomes == [None]
    assert rival_blocked.is_set()  # the cycle was closed: the first try lost it
    assert not consumer.outage.failing
    assert "lost a conflict with concurrent work (try 1 of 4)" in caplog.text
    assert run_state(engine, run_id) == "accepted"
    with Session(engine) as session:
        hops = session.exec(select(RunEvent.to_state).where(col(RunEvent.run_id) == run_id))
        assert list(hops).count("accepted") == 1
