"""The REST API on a PostgreSQL database that refuses writes for a while (a primary
demoted to a standby, a URL leading to a standby, an administrator's switch)."""

from __future__ import annotations

import httpx
import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient
from pg_database import PgDatabase
from waiting import wait_until

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.services.bootstrap import create_admin
from tme.controller.store.db import make_engine, upgrade

pytestmark = pytest.mark.external_service


def test_writes_answer_503_while_the_database_is_read_only_and_work_once_it_is_not(
    pg_database: PgDatabase,
) -> None:
    """Reads are answered as usual; a write is told to come back later (503 with
    Retry-After), not that the controller failed (500: psycopg raises the refusal as an
    InternalError). Once the database takes writes they work again, although the
    connections the API pooled meanwhile were made read-only: the pool is renewed."""
    engine = make_engine(pg_database.url())
    upgrade(engine)
    token = create_admin(engine).token
    settings = Settings(database={"url": pg_database.url()}, broker={"url": "memory://"})
    app = create_app(settings, engine=engine)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(app, headers=headers) as client:
            pg_database.refuse_writes()
            assert client.get("/api/v1/tasks").status_code == 200
            refused = client.post("/api/v1/tasks", json={"name": "while read-only"})
            assert_error(refused, 503, "refuses writes")
            assert refused.headers["retry-after"] == "5"
            assert client.get("/api/v1/tasks").json()["items"] == []
            pg_database.take_writes()

            def created() -> httpx.Response | None:
                answer = client.post("/api/v1/tasks", json={"name": "writable again"})
                if answer.status_code == 503:
                    return None  # on a connection made while it was read-only
                return answer

            answer = wait_until(created, what="a write taken")
            assert isinstance(answer, httpx.Response) and answer.status_code == 201, answer
    finally:
        engine.dispose()
