"""`tme db upgrade|current`, and `tme controller` refusing a database without the schema."""

from __future__ import annotations

from pathlib import Path

from cli_lines import failing_tme, one_line_error
from sqlalchemy import inspect
from typer.testing import CliRunner

from tme.cli.main import app
from tme.controller.store.db import current_revision, head_revision, make_engine

ROOT = Path(__file__).resolve().parents[2]


def test_upgrade_a_fresh_database_then_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/tme.db"
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert first.exit_code == 0, first.output
    assert "upgraded from empty" in first.output and head_revision() in first.output

    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        assert {"tasks", "runs", "run_events", "idempotency_keys"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()

    second = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert second.exit_code == 0, second.output
    assert "already at" in second.output

    current = runner.invoke(app, ["db", "current", "--url", url])
    assert current.exit_code == 0
    assert f"database: {head_revision()}" in current.output


def test_current_on_an_empty_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["db", "current", "--url", f"sqlite:///{tmp_path}/e.db"])
    assert result.exit_code == 0
    assert "database: empty" in result.output


def test_controller_refuses_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    code, line = failing_tme(["controller"], tmp_path, TME_DATABASE__URL=url, TME_HTTP__PORT="0")
    assert code == 1
    assert "tme db upgrade" in line and "empty" in line


# --- a database the CLI cannot use: one line, exit 1, never a traceback ----------


def _unreachable_postgres() -> str:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://tme:hunter2@127.0.0.1:{port}/tme"


def test_db_commands_report_an_unreachable_database_in_one_line() -> None:
    url = _unreachable_postgres()
    for command in (["db", "upgrade", "--url", url], ["db", "current", "--url", url]):
        line = one_line_error(CliRunner().invoke(app, command))
        assert "cannot use the database at postgresql://tme:***@127.0.0.1" in line
        assert "hunter2" not in line


def test_user_and_audit_commands_report_an_unreachable_database_in_one_line() -> None:
    url = _unreachable_postgres()
    for command in (["user", "list", "--db", url], ["audit", "verify", "--db", url]):
        line = one_line_error(CliRunner().invoke(app, command))
        assert "cannot use the database at" in line and "hunter2" not in line


def test_db_commands_report_a_malformed_url_or_a_missing_driver(tmp_path: Path) -> None:
    line = one_line_error(CliRunner().invoke(app, ["db", "current", "--url", "not-a-url"]))
    assert "database URL 'not-a-url'" in line
    line = one_line_error(CliRunner().invoke(app, ["db", "upgrade", "--url", "mysql://h/x"]))
    assert "driver not installed" in line
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/tme.db"  # its folder cannot be created: a file is in the way
    line = one_line_error(CliRunner().invoke(app, ["db", "upgrade", "--url", url]))
    assert "cannot use the database at sqlite:///" in line
