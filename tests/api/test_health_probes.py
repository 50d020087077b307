"""/healthz and /readyz as an orchestrator uses them: without a token, answered
whatever the database does, and saying nothing an anonymous caller should not read."""

from __future__ import annotations

import asyncio

import anyio.to_thread
import httpx
import pytest
from api_helpers import assert_error
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ports import free_port
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from waiting import wait_until

from tme.controller.readiness import Readiness, check_database
from tme.controller.store.db import make_engine


async def test_liveness_answers_while_every_worker_thread_is_taken(app: FastAPI) -> None:
    """Requests stuck on a database that stopped answering hold every thread of the pool
    for up to database.tcp_timeout_s; a liveness probe waiting behind them fails, and
    the orchestrator restarts a controller that only waits for its database."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tme") as client:
            answer = await asyncio.wait_for(client.get("/healthz"), timeout=10)
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_readiness_needs_no_token_and_names_each_check(app: FastAPI) -> None:
    with TestClient(app) as anonymous:
        # A lone controller leads as soon as its scheduling loop took the lease.
        wait_until(lambda: anonymous.get("/readyz").json().get("role") == "leader", timeout=10)
        ready = anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "broker": "ok"},
        "role": "leader",
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_a_probe_may_ask_head_without_a_token(app: FastAPI, path: str) -> None:
    # A monitor asking HEAD (the default of many) got 401 "authentication required".
    with TestClient(app) as anonymous:
        answer = anonymous.head(path)
        refused = anonymous.post(path)
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    assert refused.status_code == 401  # other methods stay refused, as before


def test_readiness_says_the_database_is_unreachable_and_logs_why(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    with TestClient(app) as anonymous:
        down = make_engine(f"postgresql://tme-secret-user@127.0.0.1:{port}/tme")
        real, app.state.engine = app.state.engine, down
        try:
            answer = anonymous.get("/readyz")
            assert anonymous.get("/healthz").status_code == 200  # alive, only not ready
        finally:
            app.state.engine = real
            down.dispose()
        error = assert_error(answer, 503, "failing")
        assert error["code"] == "not_ready"
        assert error["details"]["database"] == "failing: unreachable"
        assert str(port) not in answer.text and "secret-user" not in answer.text
        assert any(
            "readiness check database failed" in r.getMessage() and str(port) in r.exc_text
            for r in caplog.records
            if r.exc_text
        )
        assert anonymous.get("/readyz").status_code == 200  # back


def test_readiness_fails_while_the_schema_is_not_this_controllers(
    app: FastAPI, app_engine: Engine
) -> None:
    """A newer release's `tme db upgrade` ran under this controller (or a downgrade)."""
    with app_engine.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    with TestClient(app) as anonymous:
        with app_engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'f00'"))
        try:
            behind = anonymous.get("/readyz")
        finally:
            with app_engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        assert anonymous.get("/readyz").status_code == 200
    details = assert_error(behind, 503)["details"]
    assert details["schema"] == f"failing: schema at revision f00, this controller needs {head}"
    assert details["database"] == "ok"


@pytest.mark.external_service
def test_a_read_only_postgresql_is_not_ready(postgres_database_url: str) -> None:
    """A hot standby, or a server whose writes were turned off (a failover gone wrong,
    a full disk answered with default_transaction_read_only): it answers, but every
    write of the controller would fail."""
    read_only = create_engine(
        postgres_database_url, connect_args={"options": "-c default_transaction_read_only=on"}
    )
    writable = create_engine(postgres_database_url)
    try:
        readiness = Readiness()
        readiness.add("database", lambda: check_database(read_only))
        readiness.add("writable", lambda: check_database(writable))
        results = readiness.run()
    finally:
        read_only.dispose()
        writable.dispose()
    assert results["database"].startswith("failing: read-only")
    assert results["writable"] == "ok"
