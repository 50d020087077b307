"""Text an operator reads, and the characters it may not hold.

A task's name and description, a rollout's, a notification rule's name, a device stop's
reason: each shows in lists, on the dashboard, in emails and in `tme task list`. None
may hold control characters (ESC cleared an operator's terminal, a newline split an
email subject) or the invisible characters that change how the text around them reads:
a bidirectional override made "pump 2 stop" show as something else, a zero-width space
made two names that look the same differ. A label is one line; free text (a description)
keeps its line breaks and tabs. Values written to a device are not text of this kind:
the device's safety envelope checks them.
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
    return "\\0" if code == 0 else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escaped(text: str) -> str:
    """`text` with each control or invisible character written as its escape (`\\0`,
    `\\x1b`, `\\u202e`): for a record that keeps what anyone sent (a login name, a path
    in the audit log) and must still read as it shows."""
    return _NOT_IN_A_LABEL.sub(_escape, text)
