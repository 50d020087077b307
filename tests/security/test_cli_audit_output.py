"""`tme audit tail` prints the rows as they are: a refused request's path is whatever a
client sent, and brackets in it ("[/x]") made the command fail with a traceback, so
anyone who could reach the API could break the administrator's view of the log."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tme.cli.main import app
from tme.config import Settings
from tme.controller.services import audit


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
