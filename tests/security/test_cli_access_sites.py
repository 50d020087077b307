"""`tme user create` and `tme token create` refuse a site no task can target ("plant 1"):
such a grant reaches nothing, and the typo behind it went unnoticed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli.main import app


@pytest.fixture
def db_url(fresh_sqlite, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    fresh_sqlite(tmp_path / "tme.db").dispose()
    return f"sqlite:///{tmp_path / 'tme.db'}"


def _tme(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_a_user_granted_a_site_no_task_can_target_is_refused(db_url: str) -> None:
    user = ["user", "create", "bob", "--role", "viewer", "--password", "long enough", "--db"]
    refused = _tme(*user, db_url, "--sites", "plant-1,plant 2")
    assert refused.exit_code == 2, refused.output
    assert "sites" in refused.stderr and "'plant 2'" in refused.stderr
    listed = _tme("user", "list", "--db", db_url, "--json")
    assert "bob" not in listed.stdout  # nothing stored
    made = _tme(*user, db_url, "--sites", "plant-1, plant-2")
    assert made.exit_code == 0, made.output


def test_a_token_narrowed_to_a_site_no_task_can_target_is_refused(db_url: str) -> None:
    admin = ["user", "create", "root1", "--role", "admin", "--password", "long enough"]
    assert _tme(*admin, "--db", db_url).exit_code == 0
    token = ["token", "create", "root1", "--name", "t", "--db", db_url]
    refused = _tme(*token, "--sites", "plant/1")
    assert refused.exit_code == 2, refused.output
    assert "'plant/1'" in refused.stderr
    assert _tme(*token, "--sites", "plant-1").exit_code == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["bad name", "--role", "viewer"], "error: invalid username: 1-64 letters"),
        (["bob", "--role", "boss"], "error: invalid role: must be one of viewer, operator,"),
        (["bob", "--role", "viewer", "--sites", "plant 1"], "error: invalid sites: 'plant 1'"),
    ],
)
def test_a_user_it_would_refuse_is_refused_before_the_password_is_asked(
    tmp_path: Path, args: list[str], line: str
) -> None:
    # It asked for the password twice, then refused the name, role or sites.
    result = CliRunner().invoke(
        app, ["user", "create", *args, "--db", f"sqlite:///{tmp_path / 'none.db'}"], input=""
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(line), result.stderr
    assert "password" not in result.output.lower()
    assert list(tmp_path.iterdir()) == []  # no database opened either


def test_a_configuration_error_changes_nothing_and_leaves_no_change_unaudited(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings (the audit key) were read for the audit row only, after the change was
    # committed: the user or token was made, with no row, and the command said error.
    assert _tme("user", "create", "ann", "--role", "admin", "--password", "long enough",
                "--db", db_url).exit_code == 0  # fmt: skip
    monkeypatch.setenv("TME_HTTP__PORT", "abc")
    changes = [
        ["user", "create", "bob", "--role", "viewer", "--password", "long enough"],
        ["token", "create", "ann", "--name", "t", "--days", "3"],
        ["user", "disable", "ann"],
    ]
    for change in changes:
        refused = _tme(*change, "--db", db_url)
        assert refused.exit_code == 1, refused.output
        assert refused.stderr.startswith("error: http.port: must be an integer"), refused.stderr
    monkeypatch.delenv("TME_HTTP__PORT")
    users = json.loads(_tme("user", "list", "--db", db_url, "--json").stdout)
    assert [(u["username"], u["disabled"]) for u in users] == [("ann", False)]
    assert json.loads(_tme("token", "list", "--db", db_url, "--json").stdout) == []
