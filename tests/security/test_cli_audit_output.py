"""`tme audit tail` prints the rows as they are: a refused request's path is whatever a
client sent, and brackets in it ("[/x]") made the command fail with a traceback, so
anyone who could reach the API could break the administrator's view of the log."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tme.cli.main import app
from tme.config import Settings
from tme.controller.services import audit
from tme.controller.services.audit import AuditEntryPublic


def test_audit_tail_shows_a_row_with_brackets_as_given(fresh_sqlite, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = fresh_sqlite(tmp_path / "tme.db")
    try:
        audit.use_key(engine, Settings())
        target = "GET /api/v1/tasks/[/x][red]y[/red]"
        audit.record(engine, "auth.token_refused", target=target, outcome="refused")
    finally:
        engine.dispose()
    result = CliRunner().invoke(app, ["audit", "tail", "--db", f"sqlite:///{tmp_path / 'tme.db'}"])
    assert result.exception is None, result.exception
    assert target in result.stdout, result.stdout


def test_audit_tail_json_lists_the_rows_as_the_api_does(fresh_sqlite, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = fresh_sqlite(tmp_path / "tme.db")
    try:
        audit.use_key(engine, Settings())
        for n in range(3):
            audit.record(engine, "task.create", actor="alice", target=f"task:{n}")
    finally:
        engine.dispose()
    db = f"sqlite:///{tmp_path / 'tme.db'}"
    result = CliRunner().invoke(app, ["audit", "tail", "--limit", "2", "--json", "--db", db])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    # the two newest, the newest last, as the lines are printed
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("alice", "task.create", "task:1"),
        ("alice", "task.create", "task:2"),
    ]
    assert rows[0]["id"] < rows[1]["id"] and rows[1]["prev_hash"] == rows[0]["hash"]
    assert set(rows[0]) == set(AuditEntryPublic.model_fields)
    text = CliRunner().invoke(app, ["audit", "tail", "--limit", "2", "--db", db]).stdout
    assert [line.split()[0] for line in text.splitlines()] == [str(r["id"]) for r in rows]
