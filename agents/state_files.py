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
def opening(path: Path, what: str, database: bool = True) -> Iterator[None]:
    """Turn a failure to create, open or set up `path` into a ConfigError naming it."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if path.parent.exists() and not path.parent.is_dir():
            reason = f"{path.parent} is a file, not a directory"
        hint = "a writable directory" + (", and the file a database" if database else "")
        raise ConfigError(
            f"cannot open {what} {path}: {reason} (its state directory must be {hint})",
            source=str(path),
        ) from exc


class StateDirLock:
    """One agent process per state directory: its command record is what keeps a
    command from running twice, and two processes on one record (an agent started by
    hand beside its service) each take the other's commands. Held with flock on
    `<state_dir>/agent.lock` (which names the holder's pid) from start to stop; the
    kernel drops it when the process dies, so a killed agent leaves nothing to clean up.
    """

    def __init__(self, state_dir: Path, what: str = "agent") -> None:
        self.path = state_dir / f"{what}.lock"
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl
        import os

        with opening(self.path, f"the {self.what}'s lock file", database=False):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another {self.what} (process {holder}) uses the state directory "
                f"{self.path.parent}: one {self.what} process per state directory (stop "
                "the other, or give this one its own state_dir)",
                source=str(self.path),
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        import os

        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock
