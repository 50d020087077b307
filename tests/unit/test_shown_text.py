"""One escaping of text an operator reads (tme.shown_text.shown), for the CLI, the
dashboard and the audit log: what the rule for its kind refuses is written as an
escape, what it accepts is left as it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tme.shown_text import free_text, one_line, shown

# "mi-khaham" (I want): a Persian word written with its zero-width non-joiner
WORD = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
WORD_ESCAPED = "\u0645\u06cc\\u200c\u062e\u0648\u0627\u0647\u0645"


@pytest.mark.parametrize(
    ("text", "as_free_text", "as_a_name"),
    [
        ("pump 2 \u202epots", "pump 2 \\u202epots", "pump 2 \\u202epots"),
        ("\u2066a\u2069 b\u200fc\u061c", "\\u2066a\\u2069 b\\u200fc\\u061c", None),
        ("pump\u200b2\ufeff\u2060", "pump\\u200b2\\ufeff\\u2060", None),
        ("ann\x00", "ann\\x00", None),  # as \x1b: `\0` then "12" would read as octal
        ("ann\x1b[2J\x7f\x85", "ann\\x1b[2J\\x7f\\x85", None),
        # free text keeps its tabs, line breaks and joiners; a name escapes them
        ("two\nlines\tand é ✓", "two\nlines\tand é ✓", "two\\x0alines\\x09and é ✓"),
        ("a\r\nb\rc", "a\r\nb\\x0dc", "a\\x0d\\x0ab\\x0dc"),
        (f"{WORD} 👩\u200d🔧", f"{WORD} 👩\u200d🔧", f"{WORD_ESCAPED} 👩\\u200d🔧"),
    ],
)
def test_what_the_rule_refuses_shows_as_its_escape(
    text: str, as_free_text: str, as_a_name: str | None
) -> None:
    assert shown(text) == as_free_text
    assert shown(text, one_line=True) == (as_a_name or as_free_text)


# Text near the rules' edges: controls, the invisible set, joiners, letters, emoji.
_TEXT = st.text(
    st.sampled_from(
        [*map(chr, range(0x00, 0x21)), *map(chr, range(0x7E, 0xA1))]
        + [chr(c) for c in (0x061C, *range(0x200A, 0x2070), 0xFEFF)]
        + ["a", "é", "م", "👩", "\\"]
    ),
    max_size=12,
)


def _accepted(check, text: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        check(text)
    except ValueError:
        return False
    return True


@given(_TEXT)
def test_shown_text_passes_its_rule_and_accepted_text_is_left_alone(text: str) -> None:
    for check, escaped in ((free_text, shown(text)), (one_line, shown(text, one_line=True))):
        assert _accepted(check, escaped)
        assert (escaped == text) == _accepted(check, text)
        assert shown(escaped, one_line=check is one_line) == escaped
