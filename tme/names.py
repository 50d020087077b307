"""Telling a caller which names there are when theirs is not one of them.

Two wordings, one for each kind of list: a choice among a few fixed words (a status,
a run state) names the closest one and lists them all; a name among many (a device's
points, an agent's devices, a route's query parameters) names up to three close ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """The known names close to `name` (a typo) or holding it (a part: "speed" for
    "speed_setpoint"), at most three, as "; did you mean 'a', 'b'?"; "" for none."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if len(name) >= 3:
        close += [k for k in known if name.lower() in k.lower() and k not in close]
    return f"; did you mean {', '.join(map(repr, close[:3]))}?" if close else ""


def closest_hint(word: str, choices: Sequence[str]) -> str:
    """' (did you mean "x"?)' for the choice closest to `word`, "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def unknown_choice(kind: str, word: str, choices: Sequence[str]) -> str:
    """The message for a word that is none of `choices`: "unknown status 'runing'
    (did you mean "running"?); one of: idle, pending, ..."."""
    return f"unknown {kind} {word!r}{closest_hint(word, choices)}; one of: {', '.join(choices)}"
