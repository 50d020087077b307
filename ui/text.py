"""Text the dashboard shows that others wrote: stored names and descriptions (some from
before the API refused bidirectional and invisible characters), and what agents send
(a run's reason, log lines, results, device and point names, a stop's reason).

Every such text goes through `tme.shown_text.shown`, as in the CLI: a right-to-left
override in "pump 2 stop" shows as `\\u202e`, never as other words. ui.label escapes
HTML already; this is about the characters that change how text reads. A name is one
line (`name`: a tab, a line break and a joiner are escapes too); other text keeps its
tabs, line breaks and joiners (`said`). The pages' own words need neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nicegui import ui

from tme.shown_text import shown


def said(text: object) -> str:
    """Free text (a reason, a log line, a result's value) as it reads."""
    return shown(str(text))


def name(text: object) -> str:
    """A name (a task's, a device's, a point's, an audit field) as it reads."""
    return shown(str(text), one_line=True)


def label(text: object) -> ui.label:
    """A label of text someone else wrote (names inside it passed through `name`)."""
    return ui.label(said(text))


def link(text: object, target: str) -> ui.link:
    """A link whose words are a name: a task's, a step's, a rollout's."""
    return ui.link(name(text), target)


def rows(table: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A ui.table's rows with each text cell shown as a name (a cell is one line)."""
    return [
        {key: name(value) if isinstance(value, str) else value for key, value in row.items()}
        for row in table
    ]
