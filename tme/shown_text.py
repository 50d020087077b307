"""Text an operator reads, and the characters it may not hold.

A task's name and description, a rollout's, a notification rule's name, a device stop's
reason: each shows in lists, on the dashboard, in emails and in `tme task list`. None
may hold control characters (ESC cleared an operator's terminal, a newline split an
email subject) or the invisible characters that change how the text around them reads:
a bidirectional override made "pump 2 stop" show as something else, a zero-width space
made two names that look the same differ. A label is one line; free text (a description)
keeps its line breaks and tabs. Values written to a device are not text of this kind:
the device's safety envelope checks them. Text that did not pass these rules (stored
before them, or sent by an agent: a log line, a result, an error) is shown through
`shown`, which writes what they refuse as escapes; the CLI, the dashboard and the audit
log all use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

# The bidirectional controls: the left-to-right and right-to-left marks (and the Arabic
# letter mark), embeddings, overrides and isolates.
BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
# Zero-width spaces and joiners, the word joiner and invisible operators, and the
# byte-order mark (a zero-width no-break space).
ZERO_WIDTH = frozenset({*range(0x200B, 0x200E), *range(0x2060, 0x2065), 0xFEFF})
INVISIBLE = BIDI_CONTROLS | ZERO_WIDTH
_INVISIBLE = "".join(chr(code) for code in sorted(INVISIBLE))
_NOT_IN_A_LABEL = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
# Free text keeps tabs and line breaks: a carriage return only before a line feed, as a
# lone one moves a terminal's cursor back over what the line showed.
# It keeps the zero-width non-joiner and joiner too (U+200C, U+200D): Persian and the
# Indic scripts write words with them, and emoji sequences join with them; in a name they
# would make two that look the same differ, in a description they only shape the text.
JOINERS = frozenset({0x200C, 0x200D})
_IN_FREE_TEXT_NOT = "".join(chr(code) for code in sorted(INVISIBLE - JOINERS))
_NOT_IN_FREE_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_IN_FREE_TEXT_NOT}]|\r(?!\n)")

_CONTROL_NAMES = {0x00: "NUL", 0x09: "tab", 0x0A: "line feed", 0x0D: "carriage return", 0x1B: "ESC"}


def _described(char: str) -> str:
    """A character as a message names it: "the bidirectional control character U+202E
    (right-to-left override)"."""
    code = ord(char)
    kind = (
        "bidirectional control"
        if code in BIDI_CONTROLS
        else "invisible"
        if code in ZERO_WIDTH
        else "control"
    )
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "").lower()
    return f"the {kind} character U+{code:04X}" + (f" ({name})" if name else "")


def _refuse(pattern: re.Pattern[str], rule: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError(
                f"{rule}: it may not hold {_described(found.group())} (at {found.start()})"
            )
        return value

    return check


# An AfterValidator: one line of text, as a name shows in a list's row.
one_line = _refuse(_NOT_IN_A_LABEL, "one line of text that reads as it shows")
# An AfterValidator: text of many lines (tabs and line breaks kept) that reads as it shows.
free_text = _refuse(_NOT_IN_FREE_TEXT, "text that reads as it shows")

Label = Annotated[str, AfterValidator(one_line)]
FreeText = Annotated[str, AfterValidator(free_text)]


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, *, one_line: bool = False) -> str:
    """`text` as an operator reads it, wherever it came from (stored before these rules,
    sent by an agent, typed by anyone): each character the rule for its kind refuses is
    written as its escape, `\\xNN` below U+0100 (`\\x1b`, `\\x00`) and `\\uNNNN` above
    (`\\u202e`), so nothing it holds reorders, hides or clears what shows around it.

    Free text (the default: a description, a run's reason, a log line, a result) keeps
    what `free_text` allows, tabs, line feeds, a carriage return before a line feed and
    the joiners; `one_line` (a name, an audit field) escapes what `one_line` refuses,
    those included. Text the rule accepts is returned as it is, and what is returned
    the rule always accepts (so a second pass changes nothing)."""
    return (_NOT_IN_A_LABEL if one_line else _NOT_IN_FREE_TEXT).sub(_escape, text)
