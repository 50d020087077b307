"""A NUL that anyone can send (in a path, a login name) is written to the audit log as
`\\x00`, as the CLI and the dashboard write it: PostgreSQL text cannot hold it, and the
row was lost, the request answered 500 (a bad token with %00 in its path) or 422 (a
login)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dialects import DIALECTS
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.services.bootstrap import create_admin
from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.security_models import AuditEntry


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """The URL and engine of an upgraded database of the test's own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/tme.db"
        engine = request.getfixturevalue("fresh_sqlite")(tmp_path / "tme.db")
        yield url, engine
    else:
        pg = request.getfixturevalue("pg_database")
        engine = make_engine(pg.url())
        upgrade(engine)
        yield pg.url(), engine
    engine.dispose()


def _rows(engine: Engine, action: str) -> list[AuditEntry]:
    with session_scope(engine) as session:
        query = select(AuditEntry).where(col(AuditEntry.action).startswith(action))
        return list(session.exec(query.order_by(col(AuditEntry.id))).all())


def test_a_nul_sent_by_anyone_is_audited_as_its_escape(
    database: tuple[str, Engine],
) -> None:
    url, engine = database
    token = create_admin(engine).token
    settings = Settings(database={"url": url}, broker={"url": "memory://"})
    app = create_app(settings, engine=engine, runtime=False, warm=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        bad = client.get("/api/v1/tasks%00", headers={"Authorization": "Bearer tme_a_b"})
        assert bad.status_code == 401, bad.text
        admin = {"Authorization": f"Bearer {token}"}
        refused = client.post("/api/v1/tasks/1%00/run", headers=admin)
        assert refused.status_code == 422, refused.text
    refusals = _rows(engine, "auth.token_refused")
    assert [(r.target, r.outcome) for r in refusals] == [("GET /api/v1/tasks\\x00", "refused")]
    changes = _rows(engine, "run.control")
    assert [(r.target, r.outcome) for r in changes] == [("POST /api/v1/tasks/1\\x00/run", "failed")]


def test_a_login_with_a_name_no_user_can_have_is_a_wrong_name(
    database: tuple[str, Engine],
) -> None:
    """Answered 401 and audited as any wrong name is, where PostgreSQL refused to look up
    a name with a NUL (422, "a value cannot be stored") and nothing was recorded."""
    url, engine = database
    settings = Settings(database={"url": url}, broker={"url": "memory://"})
    app = create_app(settings, engine=engine, runtime=False, warm=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        for name in ("ann\x00", "no such user"):
            login = {"username": name, "password": "not-the-password"}
            answer = client.post("/api/v1/auth/login", json=login)
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"]["message"] == "wrong username or password"
    failed = _rows(engine, "auth.login_failed")
    assert [r.actor for r in failed] == ["ann\\x00", "no such user"]
