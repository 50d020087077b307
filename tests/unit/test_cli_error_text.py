"""A CLI error prints its text as it is: brackets in a value are not taken as markup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_lines import failing_tme
from python_module import run_module
from typer.testing import CliRunner

from tme.cli.main import app


def test_a_config_value_with_brackets_is_shown_as_given() -> None:
    env = {**os.environ, "TME_HTTP__PORT": "[bold]80[/bold]"}
    done = run_module("tme.cli.main", "config", "show", env=env, timeout=60)

    assert done.returncode == 1
    assert '"[bold]80[/bold]"' in done.stderr and "TME_HTTP__PORT" in done.stderr


USAGE_ERRORS = {
    "not an integer": (["task", "show", "abc"], "error: Invalid value for 'task_id'"),
    "out of range": (["task", "list", "--limit", "-5"], "error: Invalid value for '--limit'"),
    "unknown option": (["task", "create", "--nope"], "error: No such option: --nope"),
    "missing argument": (["task", "show"], "error: Missing argument 'task_id'"),
    "unknown command": (["bogus"], "error: No such command 'bogus'"),
}


@pytest.mark.parametrize(("args", "start"), list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], start: str, tmp_path: Path) -> None:
    """As every other error of the CLI (docs/sdk.md), where typer drew a box of six lines
    around it: a script reading the last line of stderr got the box's border."""
    code, line = failing_tme(args, tmp_path)
    assert code == 2
    assert line.startswith(start) and line.endswith("--help')"), line


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--port", "70000"],
        ["controller", "--port", "-1"],
        ["sim", "modbus", "--port", "65536"],
        ["sim", "serial", "--port", "-2"],
    ],
    ids=["demo", "controller", "sim modbus", "sim serial"],
)
def test_a_port_out_of_range_is_a_usage_error(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It went on to bind it: a traceback ending "OverflowError: bind(): port must be
    0-65535", after the demo had made its data folder."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Invalid value for '--port'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--site", "plant 1"],
            "error: --site 'plant 1': 'plant 1' is not a name a task can target"
            " (1 to 64 letters, digits, - and _, starting with a letter or digit)",
        ),
        (
            ["--broker", "amqq://mq"],
            "error: --broker: no bus transport for 'amqq':// (known: amqp://, amqps://,"
            " memory://); did you mean amqp://?",
        ),
    ],
    ids=["site", "broker"],
)
def test_a_demo_option_it_cannot_use_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], line: str
) -> None:
    """A site no task can target: the whole stack started, and made its data folder,
    before the site's agents refused the name (exit 1). A broker URL of no transport: a
    traceback of the controller's settings."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", *args, "--port", "0"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.strip() == line
    assert list(tmp_path.iterdir()) == []
