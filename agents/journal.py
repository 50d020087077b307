"""The gateway's journal of commands (SQLite, stdlib only).

A command is journaled before the gateway acks it to RabbitMQ, so from then on the
journal, not the queue, is what guarantees it reaches its agent. An entry moves
pending (held or not yet sent) -> sent -> done (the agent's final answer reached the
bus; an earlier event does not close it, since the answer after it may still be lost),
expired (never sent before not_after) or unanswered (sent, but no final answer long
after it could have run: given up).
`delivered` records that the `delivered` event reached the bus.

Open entries are read in the order their commands go to their agents: higher priority
first, then in the order they were journaled; so commands held for an agent that was
offline go, when it returns, priority first.

Only journaling a command must be on disk before its ack, so that write alone is
synced (and a batch of commands shares one sync). Later updates are not synced
each: one lost in a power cut leaves the entry open, so the command is offered
again and answered from the agent's record, never run twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tme.agents.command_record import EXPIRED_MARGIN_S
from tme.agents.state_files import opening
from tme.protocol import Command

State = Literal["pending", "sent", "done", "expired", "unanswered"]
Closed = Literal["done", "expired", "unanswered"]
# A closed entry answers "have I seen this id" this long after it closed (the gateway's
# journal_keep_s), and never less than until its command can no longer run: past its
# not_after (by EXPIRED_MARGIN_S) a command journaled again is expired, not sent.
KEEP_CLOSED_S = 24 * 3600
CLOSED_MEMO = 10_000  # recently closed ids remembered in memory
# A write waits this long for a lock another connection holds (a backup, the sqlite3
# shell) before it fails; the gateway then holds the commands and tries again.
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    body BLOB NOT NULL,
    not_after REAL NOT NULL,
    state TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    updated REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 5
);
CREATE INDEX IF NOT EXISTS journal_open ON journal (state) WHERE state IN ('pending', 'sent');
CREATE INDEX IF NOT EXISTS journal_closed ON journal (updated)
    WHERE state IN ('done', 'expired', 'unanswered');
"""
# The prune reads only what it deletes (journal_closed), not a day of the site's commands.
PRUNE = (
    "DELETE FROM journal WHERE state IN ('done', 'expired', 'unanswered')"
    " AND updated < :kept AND not_after < :expired"
)
# A journal written before commands had a priority: its entries' commands had none, so
# they are at the default (as such a command decodes).
_ADD_PRIORITY = "ALTER TABLE journal ADD COLUMN priority INTEGER NOT NULL DEFAULT 5"


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

    def __init__(self, path: Path, keep_s: float = KEEP_CLOSED_S) -> None:
        self.keep_s = keep_s
        self._lock = threading.Lock()
        # Ids this process closed lately: an entry never reopens (adding is INSERT OR
        # IGNORE) until `prune` deletes it, so the command's later events skip the write.
        # Oldest first, at most CLOSED_MEMO (a forgotten id costs one idle UPDATE).
        self._closed: dict[str, None] = {}
        with opening(path, "the gateway's journal"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # `add_many` syncs its own commit
                self._db.executescript(_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(journal)")}
                if "priority" not in columns:
                    self._db.execute(_ADD_PRIORITY)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, command: Command, body: bytes) -> bool:
        """Journal a command; False if its id is already journaled (a redelivery)."""
        return self.add_many([(command, body)])[0]

    def add_many(self, commands: list[tuple[Command, bytes]]) -> list[bool]:
        """Journal commands in one synced transaction; per command, whether it was new."""
        now = time.time()
        added = []
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")  # the ack to RabbitMQ relies on it
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for command, body in commands:
                        cursor = self._db.execute(
                            "INSERT OR IGNORE INTO journal"
                            " (id, agent, body, not_after, state, updated, priority)"
                            " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                            (
                                command.id,
                                command.agent,
                                body,
                                command.not_after.timestamp(),
                                now,
                                command.priority,
                            ),
                        )
                        added.append(cursor.rowcount == 1)
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite has rolled back itself after some errors (a disk full, an
                    # I/O error); a ROLLBACK then fails and its error hid the cause.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
        return added

    def open_entries(self) -> list[JournalEntry]:
        """Entries not closed yet, higher priority first, then oldest first."""
        return self._select("WHERE state IN ('pending', 'sent')", ())

    def open_counts(self) -> tuple[int, int]:
        """How many entries are pending (not sent yet) and sent (not answered yet)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM journal"
                " WHERE state IN ('pending', 'sent') GROUP BY state"
            ).fetchall()
        counts = dict(rows)
        return int(counts.get("pending", 0)), int(counts.get("sent", 0))

    def entries_needing_action(
        self, resend_sent_before: float, resend_agents: set[str], resend_all: bool
    ) -> list[JournalEntry]:
        """Open entries the dispatcher has something to do with, higher priority first,
        then oldest first: pending ones, sent ones whose `delivered` is not reported
        yet, and sent ones to offer again (sent before `resend_sent_before`, of
        `resend_agents`, or all of them)."""
        if resend_all:
            return self.open_entries()
        agents = sorted(resend_agents)
        marks = ", ".join("?" for _ in agents)
        again = f" OR agent IN ({marks})" if agents else ""
        # `state IN (...)` first: it reads the open entries' (partial) index; an OR of
        # the states alone read every entry kept, each time the dispatcher woke.
        return self._select(
            "WHERE state IN ('pending', 'sent') AND (state = 'pending'"
            f" OR delivered = 0 OR sent_at < ?{again})",
            (resend_sent_before, *agents),
        )

    def _select(self, where: str, params: tuple[object, ...]) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, agent, body, not_after, state, delivered, sent_at FROM journal "
                + where
                + " ORDER BY priority DESC, rowid",
                params,
            ).fetchall()
        return [JournalEntry(r[0], r[1], bytes(r[2]), r[3], r[4], bool(r[5]), r[6]) for r in rows]

    def get_state(self, command_id: str) -> State | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM journal WHERE id = ?", (command_id,)
            ).fetchone()
        return row[0] if row else None

    def mark_sent(self, command_id: str) -> None:
        self.mark_sent_many([command_id])

    def mark_sent_many(self, command_ids: list[str]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany(
                "UPDATE journal SET state = 'sent', sent_at = ?, updated = ? "
                "WHERE id = ? AND state IN ('pending', 'sent')",
                [(now, now, command_id) for command_id in command_ids],
            )

    def mark_delivered(self, command_id: str) -> None:
        self._update(
            "UPDATE journal SET delivered = 1, updated = ? WHERE id = ?", (time.time(), command_id)
        )

    def close_entry(self, command_id: str, state: Closed, agent: str | None = None) -> None:
        """Close an open entry; the agent's later events for it cost no write. With
        `agent`, only an entry for that agent: another agent's answer closes nothing."""
        with self._lock:  # the bus consumer and the event forwarder both close entries
            if command_id in self._closed:
                return
            sql = "UPDATE journal SET state = ?, updated = ? WHERE id = ?"
            params: tuple[object, ...] = (state, time.time(), command_id)
            if agent is not None:
                sql, params = sql + " AND agent = ?", (*params, agent)
            cursor = self._db.execute(sql + " AND state IN ('pending', 'sent')", params)
            if cursor.rowcount != 1:
                # No open entry: already closed, or not journaled yet (an answer that
                # overtook its command, as a cancel's may). Remembered, the entry
                # journaled later would skip this write and be offered forever.
                return
            self._closed[command_id] = None
            if len(self._closed) > CLOSED_MEMO:
                del self._closed[next(iter(self._closed))]

    def prune(self, now: float | None = None) -> int:
        """Delete the entries closed more than `keep_s` ago whose command can no longer
        run (past its not_after by EXPIRED_MARGIN_S), as of `now` (default: the time);
        return how many."""
        now = time.time() if now is None else now
        kept, expired = now - self.keep_s, now - EXPIRED_MARGIN_S
        with self._lock:
            deleted = self._db.execute(PRUNE, {"kept": kept, "expired": expired}).rowcount
            self._closed.clear()  # a pruned id may be journaled (and closed) anew
        return deleted

    def _update(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)
