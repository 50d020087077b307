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

import psycopg
import pytest
from deadlocks import Rival, stall_first_try, upgraded_engine
from fastapi.testclient import TestClient
from pg_database import PgDatabase
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from tme.config import Settings
from tme.controller.api import errors
from tme.controller.app import create_app
from tme.controller.services.bootstrap import create_admin

pytestmark = pytest.mark.external_service


@pytest.fixture
def engine(pg_database: PgDatabase) -> Iterator[Engine]:
    yield from upgraded_engine(pg_database)


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

        # The rival holds the run, then wants the task once the report holds it; the
        # report moves the run only once the rival waits, which closes the cycle.
        holds_task = threading.Event()
        rival = Rival(
            pg_database.url(),
            ("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,)),
            ("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task["id"],)),
            holds_task,
        )
        rival_blocked = rival.watch(engine)
        stall_first_try(
            engine,
            lambda sql: "FROM tasks" in sql and "FOR UPDATE" in sql,
            lambda sql: sql.startswith("UPDATE runs"),
            holds_task,
            rival_blocked,
        )
        try:
            answer = client.patch(url, json={"status": "complete"})
        finally:
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
