"""A status report that loses a deadlock on PostgreSQL is applied anyway, once: its
transaction is run again (store/conflicts.py), not answered 503 "database unavailable".

The rival locks the run, then the task, as the scheduling pass may while it settles
a workflow step; the report locks the task (launch.lock_launches), then moves the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pg_database import PgDatabase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from waiting import wait_until

from tme.config import Settings
from tme.controller.api import errors
from tme.controller.app import create_app
from tme.controller.services.bootstrap import create_admin
from tme.controller.store.db import make_engine, upgrade

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
    """A transaction that holds the run's row and then wants the task's, once the
    report holds it. It looks for a deadlock only after a minute: the report, which
    blocks after it, finds the cycle and is the one PostgreSQL ends."""

    def __init__(self, url: str, task_id: int, run_id: str, report_holds_task: threading.Event):
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.conn.execute("SET deadlock_timeout = '1min'")
        self.pid = self.conn.info.backend_pid
        self.conn.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        self.task_id, self.report_holds_task = task_id, report_holds_task
        self.thread = threading.Thread(target=self._want_task)
        self.thread.start()

    def _want_task(self) -> None:
        self.report_holds_task.wait(10)
        self.conn.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (self.task_id,))
        self.conn.commit()

    def blocked(self, engine: Engine) -> bool:
        with engine.connect() as connection:
            blockers = connection.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid})
            return bool(blockers.scalar_one())

    def close(self) -> None:
        self.thread.join(10)
        self.conn.close()


def _stall_first_run_update(
    engine: Engine, holds_task: threading.Event, rival_blocked: threading.Event
) -> None:
    """The report's first try: note when it holds the task's row, and move the run only
    once the rival waits for that row (which closes the cycle)."""
    armed = [True]

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and "FROM tasks" in statement and "FOR UPDATE" in statement:
            holds_task.set()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and statement.startswith("UPDATE runs"):
            armed[0] = False
            assert rival_blocked.wait(10)

    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "before_cursor_execute", before)


def test_a_status_report_that_loses_a_deadlock_is_applied_once(
    engine: Engine, pg_database: PgDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tme.controller.store.conflicts")
    token = create_admin(engine).token
    settings = Settings(database={"url": pg_database.url()}, broker={"url": "memory://"})
    app = create_app(settings, engine=engine, runtime=False)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        task = client.post("/api/v1/tasks", json={"name": "external work"}).json()
        url = f"/api/v1/tasks/{task['id']}"
        run_id = client.patch(url, json={"status": "started"}).json()["latest_run_id"]

        holds_task, rival_blocked = threading.Event(), threading.Event()
        _stall_first_run_update(engine, holds_task, rival_blocked)
        rival = Rival(pg_database.url(), task["id"], run_id, holds_task)

        def watch() -> None:
            wait_until(lambda: rival.blocked(engine), what="the rival waiting for the task")
            rival_blocked.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            answer = client.patch(url, json={"status": "complete"})
        finally:
            watcher.join(10)
            rival.close()
        assert answer.status_code == 200, answer.text
        assert rival_blocked.is_set()  # the cycle was closed: the first try lost it
        assert "lost a conflict with concurrent work (try 1 of 4)" in caplog.text
        assert answer.json()["status"] == "succeeded"
    with engine.connect() as connection:
        hops = connection.execute(
            text("SELECT to_state FROM run_events WHERE run_id = :id ORDER BY id"), {"id": run_id}
        )
        assert [row[0] for row in hops] == ["pending", "running", "succeeded"]


def test_a_conflict_still_lost_is_503_safe_to_send_again(engine: Engine) -> None:
    """A deadlock the tries did not get past: 503, but not "unavailable" as an outage
    is; the client is told the request conflicted and may send it again."""
    with psycopg.connect(str(engine.url).replace("+psycopg", "")) as conn:
        try:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$")
        except psycopg.errors.DeadlockDetected as exc:
            lost = exc
    answer = asyncio.run(errors._db_down(None, OperationalError("UPDATE runs", {}, lost)))  # type: ignore[arg-type]
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    body = json.loads(bytes(answer.body))["error"]
    assert "conflicted with concurrent work" in body["message"]
    assert "safe to send again" in body["message"]
    assert body["details"] == {"conflict": True}
