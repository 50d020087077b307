"""A scheduling pass whose transaction loses a deadlock on PostgreSQL runs it again
(store/conflicts.py): the pass goes through, and does not fail and log an error.

The pass settles a finished run: it marks the run's link settled, then moves the
workflow cursor. The rival holds the cursor's row, then wants the link's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from deadlocks import Rival, stall_first_try, upgraded_engine
from pg_database import PgDatabase
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.config import Settings
from tme.controller.scheduling import Scheduling
from tme.controller.services.launch import launch_run
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.workflow_models import RunLink
from tme.schemas import TaskCreate
from tme.states import RunState

pytestmark = pytest.mark.external_service


@pytest.fixture
def engine(pg_database: PgDatabase) -> Iterator[Engine]:
    yield from upgraded_engine(pg_database)


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
    # The rival holds the workflow cursor, then wants the run's link once the pass
    # marked it settled; the pass moves the cursor only once the rival waits.
    holds_link = threading.Event()
    rival = Rival(
        pg_database.url(),
        ("SELECT * FROM workflow_cursor FOR UPDATE", ()),
        ("SELECT * FROM run_links WHERE run_id = %s FOR UPDATE", (run.id,)),
        holds_link,
    )
    rival_blocked = rival.watch(engine)
    stall_first_try(
        engine,
        lambda sql: sql.startswith("UPDATE run_links"),
        lambda sql: sql.startswith("UPDATE workflow_cursor"),
        holds_link,
        rival_blocked,
    )
    try:
        scheduling.run_pass()
    finally:
        rival.close()
        scheduling.stop()
    assert not scheduling.failures.failing
    assert rival_blocked.is_set()  # the cycle was closed: the first try lost it
    assert "lost a conflict with concurrent work (try 1 of 4)" in caplog.text
    with Session(engine) as session:
        link = session.get(RunLink, run.id)
        assert link is not None and link.settled
