"""Opening an edge process's SQLite files in its state directory, with one clear error.

A state directory that is a file, sits on a path that cannot be created, or holds a
file that is not a database stops the agent or gateway at start: said in one line
naming the file (a ConfigError), not a traceback from pathlib or sqlite3.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tme.errors import ConfigError


@contextmanager
def opening(path: Path, what: str) -> Iterator[None]:
    """Turn a failure to create, open or set up `path` into a ConfigError naming it."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if path.parent.exists() and not path.parent.is_dir():
            reason = f"{path.parent} is a file, not a directory"
        raise ConfigError(
            f"cannot open {what} {path}: {reason} (its state directory must be a writable"
            " directory, and the file a database the process wrote)",
            source=str(path),
        ) from exc
