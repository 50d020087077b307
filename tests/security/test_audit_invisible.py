"""A control or invisible character anyone can send (in a login name, a path) is written
to the audit log as its escape: a right-to-left override in a login name showed the
audit list's row reversed, reading as another person's."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.store.db import session_scope
from tme.controller.store.security_models import AuditEntry


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("admin\u202enimda", "admin\\u202enimda"),
        ("\u2066ann\u2069", "\\u2066ann\\u2069"),
        ("bo\u200bb", "bo\\u200bb"),
        ("ann\x1b[2J", "ann\\x1b[2J"),
        ("ann\x00", "ann\\x00"),  # as the CLI writes it; `\\0` + "12" read as octal
    ],
)
def test_a_login_name_is_audited_with_its_invisible_characters_escaped(
    tmp_path: Path, fresh_sqlite, sent: str, kept: str
) -> None:  # type: ignore[no-untyped-def]
    engine = fresh_sqlite(tmp_path / "tme.db")
    settings = Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"}, broker={"url": "memory://"}
    )
    app = create_app(settings, engine=engine, runtime=False, warm=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/api/v1/auth/login", json={"username": sent, "password": "x"})
        assert answer.status_code == 401, answer.text
        bad = client.get(
            "/api/v1/tasks/" + quote(sent), headers={"Authorization": "Bearer tme_a_b"}
        )
        assert bad.status_code == 401, bad.text
    with session_scope(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        seen = {(row.action, row.actor or row.target) for row in rows}
    engine.dispose()
    assert ("auth.login_failed", kept) in seen
    assert ("auth.token_refused", f"GET /api/v1/tasks/{kept}") in seen
