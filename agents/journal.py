"""The gateway's journal of commands (SQLite, stdlib only).

A command is journaled before the gateway acks it to RabbitMQ, so from then on the
journal, not the queue, is what guarantees it reaches its agent. An entry moves
pending (held or not yet sent) -> sent -> done (the agent answered: any event from
it proves it recorded the command) or expired (never sent before not_after).
`delivered` records that the `delivered` event reached the bus.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tme.protocol import Command

State = Literal["pending", "sent", "done", "expired"]
KEEP_CLOSED_S = 7 * 24 * 3600  # closed entries answer "have I seen this id" for a week

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    body BLOB NOT NULL,
    not_after REAL NOT NULL,
    state TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    updated REAL NOT NULL
)
"""


@dataclass(frozen=True)
class JournalEntry:
    id: str
    agent: str
    body: bytes
    not_after: float
    state: State
    delivered: bool
    sent_at: float | None


class Journal:
    """Thread-safe: the bus consumer, the dispatcher and the event forwarder all use it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # the ack to RabbitMQ relies on it
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, command: Command, body: bytes) -> bool:
        """Journal a command; False if its id is already journaled (a redelivery)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO journal (id, agent, body, not_after, state, updated)"
                " VALUES (?, ?, ?, ?, 'pending', ?)",
                (command.id, command.agent, body, command.not_after.timestamp(), time.time()),
            )
        return cursor.rowcount == 1

    def open_entries(self) -> list[JournalEntry]:
        """Entries not closed yet, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, agent, body, not_after, state, delivered, sent_at FROM journal"
                " WHERE state IN ('pending', 'sent') ORDER BY rowid"
            ).fetchall()
        return [JournalEntry(r[0], r[1], bytes(r[2]), r[3], r[4], bool(r[5]), r[6]) for r in rows]

    def get_state(self, command_id: str) -> State | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM journal WHERE id = ?", (command_id,)
            ).fetchone()
        return row[0] if row else None

    def mark_sent(self, command_id: str) -> None:
        self._update(
            "UPDATE journal SET state = 'sent', sent_at = ?, updated = ? "
            "WHERE id = ? AND state IN ('pending', 'sent')",
            (time.time(), time.time(), command_id),
        )

    def mark_delivered(self, command_id: str) -> None:
        self._update(
            "UPDATE journal SET delivered = 1, updated = ? WHERE id = ?", (time.time(), command_id)
        )

    def close_entry(self, command_id: str, state: Literal["done", "expired"]) -> None:
        self._update(
            "UPDATE journal SET state = ?, updated = ? "
            "WHERE id = ? AND state IN ('pending', 'sent')",
            (state, time.time(), command_id),
        )

    def prune(self, older_than_s: float = KEEP_CLOSED_S) -> None:
        self._update(
            "DELETE FROM journal WHERE state IN ('done', 'expired') AND updated < ?",
            (time.time() - older_than_s,),
        )

    def _update(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)
