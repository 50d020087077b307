"""The CLI's help gives each paragraph wrapped to the terminal, not broken where the
source's docstring was: a command's own help, and its summary in its group's list
(`tme task --help`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli.main import app


@pytest.mark.parametrize(
    ("group", "summary"),
    [
        (
            "task",
            "Ask the task's agent what it would do now, without running it (a dry run): the"
            " envelope, a lockout or stop,",
        ),
        ("task", "its schedule, trigger, dependencies and planned retries"),
    ],
)
def test_a_command_list_gives_each_summary_unbroken(group: str, summary: str) -> None:
    result = CliRunner().invoke(app, [group, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert summary in result.output


def test_every_command_has_a_one_line_summary() -> None:
    """Every command in every group: its summary holds no line break of its own."""

    def commands(group):  # type: ignore[no-untyped-def]
        yield from group.registered_commands
        for sub in group.registered_groups:
            yield from commands(sub.typer_instance)

    broken = [c.name for c in commands(app) if c.short_help and "\n" in c.short_help]
    assert not broken
    assert all(c.short_help for c in commands(app) if c.callback and c.callback.__doc__)


def test_a_commands_own_help_wraps_its_paragraphs_to_the_terminal() -> None:
    result = CliRunner().invoke(app, ["task", "create", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # the docstring breaks after "A machine task is"; a wide terminal shows one line
    assert "in every task of a list. A machine task is checked against what its agent" in (
        result.output
    )


def test_every_option_says_what_it_does() -> None:
    """`tme agent --help` and `tme gateway --help` listed --verbose (and the gateway its
    --state-dir) with no word of what it does."""
    import typer

    def options(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                yield path, param
        for name, sub in getattr(command, "commands", {}).items():
            yield from options(sub, f"{path} {name}")

    found = list(options(typer.main.get_command(app), "tme"))
    assert any(path == "tme task create" for path, _ in found)  # it walks every group
    silent = [f"{path} {'/'.join(option.opts)}" for path, option in found if not option.help]
    assert not silent, silent


def test_misfire_help_says_skip_takes_a_grace_too() -> None:
    # `--misfire skip:30` sets a grace of 30 s; the help offered the grace to run_once only.
    result = CliRunner().invoke(app, ["task", "create", "--help"], env={"COLUMNS": "200"})
    assert "A late schedule slot: skip or run_once, each [:GRACE_S]" in result.output
