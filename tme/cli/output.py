"""Shared output helpers of the CLI: rich tables by default, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tme.shown_text import shown


def visible(text: str) -> str:
    """Text as it reads, whoever wrote it (a task's name, an agent's reason, a command's
    output): a control character is shown as its escape (`\\x1b`), never sent to the
    terminal, where ESC starts its commands (clear the screen, set the title, a hidden
    link); so is a bidi control, which shows text in another order, and a zero-width
    character, which hides in it. Line ends and tabs stay, as do the joiners that shape
    a description's words: the CLI prints free text (tme.shown_text.shown)."""
    return shown(text)


class TextConsole(Console):
    """A console that prints every string it renders as `visible` text (markup, which
    the CLI's own strings use, is applied after)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(visible(text), **kwargs)


console = TextConsole()
err_console = TextConsole(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one readable error line and exit non-zero. The message is plain text: what
    looks like markup in it ("[conflict]", a config value) is printed as it is."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    whole: Sequence[str] = (),
) -> None:
    """A table that hides nothing in a narrow terminal (80 columns when piped): a long
    value wraps, and each column in `whole` (ids a person copies into the next command)
    stays on one line, as wide as its longest value. Rich cut both short with "…".
    A value is plain text: brackets in a task's name or a setting (`[urgent]`, `[a, b]`)
    are shown as they are, never read as markup (which hid them, or failed on `[/x]`)."""
    table = Table(title=title, show_lines=False)
    texts = [[visible("" if v is None else str(v)) for v in row] for row in rows]
    for i, column in enumerate(columns):
        if column in whole:
            widest = max((len(row[i]) for row in texts), default=0)
            table.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            table.add_column(column, overflow="fold")
    for row in texts:  # values, never markup: a name "[/]" or "[link=...]" prints as it is
        table.add_row(*(Text(value) for value in row))
    console.print(table)


def fire_times_text(task: Any, first: int | None = None) -> str:
    """A task's next fire times (the `first` of them) in its schedule's time zone, as the
    dashboard shows them: `0 6 * * 1-5` in Europe/Berlin reads 06:00+01:00, not 05:00Z.
    --json keeps UTC."""
    zone = task.schedule.timezone if task.schedule else "UTC"
    times = ", ".join(
        when.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")
        for when in task.next_fire_times[:first]
    )
    return f"{times} ({zone})" if times else ""
