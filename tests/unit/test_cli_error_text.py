"""A CLI error prints its text as it is: brackets in a value are not taken as markup."""

from __future__ import annotations

import os

from python_module import run_module


def test_a_config_value_with_brackets_is_shown_as_given() -> None:
    env = {**os.environ, "TME_HTTP__PORT": "[bold]80[/bold]"}
    done = run_module("tme.cli.main", "config", "show", env=env, timeout=60)

    assert done.returncode == 1
    assert '"[bold]80[/bold]"' in done.stderr and "TME_HTTP__PORT" in done.stderr
