"""The CLI shows a zero-width character or a bidirectional mark as its escape, as it
did a bidi override: text stored before the API refused them ("pump\u200b2", a name
ending in a right-to-left mark) read as other text in `tme task list`."""

from __future__ import annotations

import pytest

from tme.cli.output import visible


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pump\u200b2", "pump\\u200b2"),
        ("\ufeffstop", "\\ufeffstop"),
        ("on\u200f", "on\\u200f"),
        ("a\u2060b\u061c", "a\\u2060b\\u061c"),
        ("x\u202ey", "x\\u202ey"),
        ("two\nlines\tand é ✓", "two\nlines\tand é ✓"),
    ],
)
def test_an_invisible_character_is_shown_as_its_escape(text: str, shown: str) -> None:
    assert visible(text) == shown
