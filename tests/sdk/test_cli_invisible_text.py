"""The CLI shows a zero-width character or a bidirectional mark as its escape, as it
did a bidi override: text stored before the API refused them ("pump\u200b2", a name
ending in a right-to-left mark) read as other text in `tme task list`. It prints free
text (tme.shown_text.shown): the joiners a description's words are written with stay,
and a task's name, one line, shows them as escapes too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tme.cli.main import app
from tme.cli.output import console, visible
from tme.client.sync import Tasks
from tme.schemas import TaskPublic

# "mi-khaham" (I want): a Persian word written with its zero-width non-joiner
WORD = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pump\u200b2", "pump\\u200b2"),
        ("\ufeffstop", "\\ufeffstop"),
        ("on\u200f", "on\\u200f"),
        ("a\u2060b\u061c", "a\\u2060b\\u061c"),
        ("x\u202ey", "x\\u202ey"),
        ("two\nlines\tand é ✓", "two\nlines\tand é ✓"),
        ("a\r\nb\rc\x00", "a\r\nb\\x0dc\\x00"),
        (WORD, WORD),
    ],
)
def test_an_invisible_character_is_shown_as_its_escape(text: str, shown: str) -> None:
    assert visible(text) == shown


NOW = datetime(2026, 12, 7, 3, 17, tzinfo=UTC)


def _task() -> TaskPublic:
    return TaskPublic(
        id=7, name="pump\u200d2", description=WORD, op="noop", status="idle",
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


@pytest.mark.parametrize("command", [["task", "list"], ["task", "show", "7"]])
def test_a_joiner_in_a_task_name_shows_as_its_escape(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setattr(Tasks, "list", lambda self, *_, **__: iter([_task()]))
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: _task())
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter(()))
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, [*command, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    assert "pump\\u200d2" in result.stdout
    assert "\u200d" not in result.stdout
    if "show" in command:  # a description keeps the joiner its word is written with
        assert WORD in result.stdout
