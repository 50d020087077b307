"""A scheduling pass whose transaction loses a deadlock on PostgreSQL runs it again
(store/conflicts.py): the pass goes through, and does not fail and log an error.

The pass settles a finished run: it marks the run's link settled, then moves the
workflow cursor. The rival holds the cursor's row, then wants the link's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_database import PgDatabase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from waiting import wait_until

from tme.config import Settings
from tme.controller.scheduling import Scheduling
from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.workflow_models import RunLink
from tme.schemas import TaskCreate
from tme.states import RunState

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
    """Holds the workflow cursor's row, then wants the run's link once the pass holds it.
    It looks for a deadlock only after a minute, so the pass, which blocks after it,
    finds the cycle and is the one PostgreSQL ends."""

    def __init__(self, url: str, run_id: str, pass_holds_link: threading.Event) -> None:
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.conn.execute("SET deadlock_timeout = '1min'")
        self.pid = self.conn.info.backend_pid
        self.conn.execute("SELECT * FROM workflow_cursor FOR UPDATE")
        self.run_id, self.pass_holds_link = run_id, pass_holds_link
        self.thread = threading.Thread(target=self._want_link)
        self.thread.start()

    def _want_link(self) -> None:
        self.pass_holds_link.wait(10)
        self.conn.execute("SELECT * FROM run_links WHERE run_id = %s FOR UPDATE", (self.run_id,))
        self.conn.commit()

    def blocked(self, engine: Engine) -> bool:
        with engine.connect() as connection:
            blockers = connection.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid})
            return bool(blockers.scalar_one())

    def close(self) -> None:
        self.thread.join(10)
        self.conn.close()


def _stall_first_cursor_move(
    engine: Engine, holds_link: threading.Event, rival_blocked: threading.Event
) -> None:
    armed = [True]

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE run_links"):
            holds_link.set()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE workflow_cursor"):
            armed[0] = False
            assert rival_blocked.wait(10)

    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "before_cursor_execute", before)


def test_a_pass_that_loses_a_deadlock_runs_its_transaction_again(
    engine: Engine, pg_database: PgDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tme.controller.store.conflicts")
    settings = Settings(database={"url": pg_database.url()}, broker={"url": "memory://"})
    scheduling = Scheduling(engine, None, settings)
    scheduling.step(housekeeping=False)  # the cursor's row exists from now on
    with session_scope(engine) as session:
        task, _ = create_task(session, TaskCreate(name="batch", trigger="go"))
        run = launch_run(session, task, cause="trigger", reason="trigger go", hook=None)
        transition(session, run, RunState.succeeded, reason="reported complete")
    holds_link, rival_blocked = threading.Event(), threading.Event()
    _stall_first_cursor_move(engine, holds_link, rival_blocked)
    rival = Rival(pg_database.url(), run.id, holds_link)

    def watch() -> None:
        wait_until(lambda: rival.blocked(engine), what="the rival waiting for the link")
        rival_blocked.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        scheduling.run_pass()
    finally:
        watcher.join(10)
        rival.close()
        scheduling.stop()
    assert not scheduling.failures.failing
    assert rival_blocked.is_set()  # the cycle was closed: the first try lost it
    assert "lost a conflict with concurrent work (try 1 of 4)" in caplog.text
    with Session(engine) as session:
        link = session.get(RunLink, run.id)
        assert link is not None and link.settled
