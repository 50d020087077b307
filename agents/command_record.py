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
# A final command is kept this long after its answer (the agent's `record_keep_s`), for
# a look at what the agent did; never less than until it can no longer run (below).
KEEP_FINAL_S = 24 * 3600
# What makes pruning safe: a command delivered again after its not_after is refused as
# expired by the agent, record or none, so once that has passed by the agent's own clock
# its entry is not needed to keep it from running twice. The margin covers the clock
# being set back (an NTP step) after the prune.
EXPIRED_MARGIN_S = 3600
# An entry written before the record kept each command's not_after (a file of an older
# agent) has none to go by: it is kept as long as every entry was then.
KEEP_UNDATED_S = 14 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    command TEXT NOT NULL,
    final_event TEXT,
    updated REAL NOT NULL,
    not_after REAL
);
CREATE INDEX IF NOT EXISTS commands_final ON commands (updated) WHERE stage = 'final';
"""
# The hourly prune reads only what it deletes (commands_final): scanning two weeks of
# commands took 0.2 s of the agent's event loop for 600,000 on a fast machine.
PRUNE = (
    "DELETE FROM commands WHERE stage = 'final' AND updated < :kept"
    " AND (not_after < :expired OR (not_after IS NULL AND updated < :undated))"
)


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
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(commands)")}
            if "not_after" not in columns:  # a record written by an older agent
                self._db.execute("ALTER TABLE commands ADD COLUMN not_after REAL")

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
                "INSERT OR IGNORE INTO commands (id, stage, command, updated, not_after)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    command.id,
                    "received",
                    command.model_dump_json(),
                    time.time(),
                    command.not_after.timestamp(),
                ),
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

    def prune(self, keep_s: float = KEEP_FINAL_S) -> int:
        """Delete the final entries answered more than `keep_s` ago whose command can no
        longer run (past its not_after, with EXPIRED_MARGIN_S); return how many."""
        now = time.time()
        kept, expired, undated = now - keep_s, now - EXPIRED_MARGIN_S, now - KEEP_UNDATED_S
        cursor = self._db.execute(PRUNE, {"kept": kept, "expired": expired, "undated": undated})
        return cursor.rowcount
