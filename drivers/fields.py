"""Checking a YAML mapping field by field, for the edge's config files (agent, profiles).

The device agent runs on small machines, and pydantic alone costs it about 10 MB of
resident memory; these files are small and flat, so a few plain checks do the job.
Every problem is noted under its dotted key (`devices.pump1.unit`) and all of them
are reported together, so one run of the agent shows everything wrong in a file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tme.names import did_you_mean

REQUIRED: Any = object()  # marks a field without a default


class Problems:
    """What is wrong with one document: (dotted key, message) in the order found."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        self.items.append((key or "<root>", message))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def first_key(self) -> str:
        return self.items[0][0]

    def text(self) -> str:
        return "; ".join(f"{key}: {message}" for key, message in self.items)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Fields:
    """One mapping's fields: each getter checks one field; `done` reports unknown keys.

    A getter that finds a problem notes it and returns the default (None when the
    field is required), so checking goes on; callers build nothing from a document
    with problems.
    """

    def __init__(self, data: Any, key: str, problems: Problems) -> None:
        self.key, self.problems = key, problems
        self._seen: set[str] = set()
        if not isinstance(data, dict):
            problems.add(key, f"expected a mapping, got {_kind(data)}")
            data = {}
        self.data: dict[str, Any] = data

    def raw(self, name: str) -> Any:
        """The value as it is (None when absent), for a field the caller checks itself."""
        self._seen.add(name)
        return self.data.get(name)

    def _raw(self, name: str, default: Any) -> tuple[bool, Any]:
        """(present, value); a missing required field is noted here."""
        self._seen.add(name)
        if name in self.data:
            return True, self.data[name]
        if default is REQUIRED:
            self.problems.add(join(self.key, name), "field required")
            return False, None
        return False, default

    def _bad(self, name: str, message: str, default: Any) -> Any:
        self.problems.add(join(self.key, name), message)
        return None if default is REQUIRED else default

    def text(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        pattern: str | None = None,
        choices: Iterable[str] | None = None,
        optional: bool = False,
    ) -> Any:
        present, value = self._raw(name, default)
        if not present or (optional and value is None):
            return value
        if not isinstance(value, str):
            return self._bad(name, f"expected text, got {_kind(value)}", default)
        if pattern is not None and not re.fullmatch(pattern, value):
            return self._bad(name, f"{value!r} does not match {pattern}", default)
        if choices is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            return self._bad(name, f"{value!r} is not one of {allowed}", default)
        return value

    def regex(self, name: str) -> str | None:
        """An optional regular expression (None when absent), refused here when Python
        cannot compile it: a bad one must stop the file loading, not fail each use."""
        value = self.text(name, None, optional=True)
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            return self._bad(name, f"{value!r} is not a valid regular expression: {exc}", None)
        return str(value)

    def path(self, name: str, default: Any = REQUIRED, *, optional: bool = False) -> Any:
        """A file system path, given as text or a Path."""
        present, value = self._raw(name, default)
        if not present or (optional and value is None):
            return None if value is None else Path(value)
        if not isinstance(value, str | os.PathLike) or value == "":
            return self._bad(name, f"expected a path, got {_kind(value)}", default)
        return Path(value)

    def integer(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        low: int | None = None,
        high: int | None = None,
        optional: bool = False,
    ) -> Any:
        present, value = self._raw(name, default)
        if not present or (optional and value is None):
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self._bad(name, f"expected a whole number, got {_kind(value)}", default)
        if low is not None and value < low:
            return self._bad(name, f"must be at least {low}, got {value}", default)
        if high is not None and value > high:
            return self._bad(name, f"must be at most {high}, got {value}", default)
        return value

    def number(self, name: str, default: Any = REQUIRED, *, optional: bool = False) -> Any:
        present, value = self._raw(name, default)
        if not present or (optional and value is None):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._bad(name, f"expected a number, got {_kind(value)}", default)
        if not math.isfinite(value):  # a NaN limit would let every value through
            return self._bad(name, f"must be a finite number, got {value}", default)
        return float(value)

    def flag(self, name: str, default: Any = REQUIRED) -> Any:
        present, value = self._raw(name, default)
        if present and not isinstance(value, bool):
            return self._bad(name, f"expected true or false, got {_kind(value)}", default)
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        """A sub-mapping (empty when absent); its keys are the caller's to check."""
        present, value = self._raw(name, {})
        if present and value is None:
            return {}
        if not isinstance(value, dict):
            return dict(self._bad(name, f"expected a mapping, got {_kind(value)}", {}))
        return value

    def sequence(self, name: str) -> list[Any]:
        present, value = self._raw(name, [])
        if present and value is None:
            return []
        if not isinstance(value, list):
            return list(self._bad(name, f"expected a list, got {_kind(value)}", []))
        return value

    def texts(self, name: str) -> list[str] | None:
        """An optional list of text (None when absent)."""
        _, value = self._raw(name, None)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return self._bad(name, "expected a list of text", None)
        return list(value)

    def done(self) -> None:
        """Note every key no getter asked for: a typo must not be silently ignored."""
        for name in self.data:
            if name not in self._seen:
                hint = did_you_mean(str(name), sorted(self._seen))  # allow_shel: allow_shell
                self.problems.add(join(self.key, str(name)), "unknown field" + hint)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
