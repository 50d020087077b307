"""The agent's persistent record of the commands it has seen (SQLite, stdlib only).

This is what makes execution at-most-once per command id although every hop
delivers at-least-once: a command id found here is never run again. A command
moves received -> started -> final; `started` is written *before* the machine is
touched, so after a crash a command found started-but-not-final is reported as
failed with an unknown outcome instead of being run a second time.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tme.agents.state_files import opening

if TYPE_CHECKING:  # for annotations; tme.protocol is imported where a command is read back
    from tme.protocol import Command, Event

Stage = Literal["received", "started", "final"]
KEEP_FINAL_S = 14 * 24 * 3600  # longer than any redelivery can take (journals, sessions)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    command TEXT NOT NULL,
    final_event TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_final ON commands (updated) WHERE stage = 'final';
"""
# The hourly prune reads only what it deletes (commands_final): scanning two weeks of
# commands took 0.2 s of the agent's event loop for 600,000 on a fast machine.
PRUNE = "DELETE FROM commands WHERE stage = 'final' AND updated < ?"


@dataclass(frozen=True)
class Entry:
    command: Command
    stage: Stage
    final_event: Event | None


class CommandRecord:
    """One SQLite file in the agent's state_dir; used from the agent's event-loop thread."""

    def __init__(self, path: Path) -> None:
        with opening(path, "the agent's command record"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a record lost in a power cut = a rerun
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, command_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT stage, command, final_event FROM commands WHERE id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        from tme.protocol import Command, Event

        final = Event.from_json(row[2]) if row[2] else None
        return Entry(Command.from_json(row[1]), row[0], final)

    def add(self, command: Command) -> bool:
        """Record a new command as received; False when its id is already known.

        This write alone is not synced: lost in a power cut, it only lets the redelivered
        command run once (it never started). `mark_started`, synced before the machine
        is touched, carries it to disk with it (WAL frames are synced in order).
        """
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO commands (id, stage, command, updated) VALUES (?, ?, ?, ?)",
                (command.id, "received", command.model_dump_json(), time.time()),
            )
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        return cursor.rowcount == 1

    def mark_started(self, command_id: str) -> None:
        self._set(command_id, "started", None)

    def finish(self, event: Event) -> None:
        self._set(event.command_id, "final", event.model_dump_json())

    def _set(self, command_id: str, stage: Stage, final_event: str | None) -> None:
        self._db.execute(
            "UPDATE commands SET stage = ?, final_event = COALESCE(?, final_event), updated = ?"
            " WHERE id = ?",
            (stage, final_event, time.time(), command_id),
        )

    def unfinished(self, stage: Stage) -> list[Command]:
        rows = self._db.execute("SELECT command FROM commands WHERE stage = ?", (stage,)).fetchall()
        if not rows:
            return []
        from tme.protocol import Command

        return [Command.from_json(row[0]) for row in rows]

    def prune(self, older_than_s: float = KEEP_FINAL_S) -> int:
        cursor = self._db.execute(PRUNE, (time.time() - older_than_s,))
        return cursor.rowcount
