"""Wake the leading controller from a standby one, on PostgreSQL.

Controllers sharing a database take turns leading (scheduling.py): the leader
publishes the outbox, settles workflow steps and sends notifications; a standby
serves the API and the dashboard. A standby's API writes outbox rows and settles
runs all the same, and the wake it rings (a threading.Event) is in its own process:
the leader would find that work only at its next poll (a second for the outbox, a
tick for workflow steps). So a standby also sends `NOTIFY tme_wake` after such a
commit, naming the part to wake, and every controller on PostgreSQL LISTENs on a
connection of its own and wakes that part of itself.

On SQLite nothing is sent (two controllers on one file are on one host, and the
polls find the work). A notification lost while the listening connection is down
costs nothing either: on reconnecting, every part is woken once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tme.failure_log import FailureLog

log = logging.getLogger("tme.controller")

CHANNEL = "tme_wake"
OUTBOX = "outbox"  # outbox rows were written: the dispatcher
SETTLE = "settle"  # runs settled or tasks changed: the scheduling loop
HOUSEKEEPING = "housekeeping"  # the same, with due retries and timeouts looked at too
STOP = "stop"  # a listener stopping ends its own wait (the others ignore it)
WAIT_S = 1.0  # how often the listener looks up from its connection, should a stop's go astray
RETRY_S = 2.0  # after losing its connection, before connecting again


def carries(engine: Engine) -> bool:
    """Whether notifications reach other controllers on this database (PostgreSQL)."""
    return engine.dialect.name == "postgresql"


def notify(engine: Engine, part: str) -> None:
    """Tell the controllers on this database to wake `part`, at once (its own short
    transaction: whatever called this has committed). Never raises: a wake is a hint,
    and the leader's poll finds the work anyway."""
    if not carries(engine):
        return
    try:
        with engine.begin() as connection:
            connection.execute(
                text("SELECT pg_notify(:channel, :part)"),
                {
                    "channel": CHANNEL,
                    "part": part,
                },
            )
    except Exception as exc:  # the database is away: the leader's poll finds the work
        log.debug("could not notify %s: %s", part, exc)


class WakeListener:
    """Listens for `tme_wake` on a connection of its own and calls the handler of the
    part each notification names. Only on PostgreSQL (`start` does nothing on SQLite)."""

    def __init__(self, engine: Engine, handlers: Mapping[str, Callable[[], None]]) -> None:
        self.engine = engine
        self.handlers = dict(handlers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait on it)
        self.failures = FailureLog(log, "listening for wakes")

    def start(self) -> None:
        if not carries(self.engine):
            return
        self._thread = threading.Thread(target=self._loop, name="tme-wake-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            if self.listening.is_set():
                notify(self.engine, STOP)  # the wait for notifications ends at once
            self._thread.join(timeout=WAIT_S + 5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                self.failures.failed(exc)
            self.listening.clear()
            self._close()
            self._stop.wait(RETRY_S)

    def _listen(self) -> None:
        connection = self._open()
        connection.execute(f"LISTEN {CHANNEL}")
        self.listening.set()
        self.failures.passed()
        self._wake_all()  # whatever was notified while nobody listened
        while not self._stop.is_set():
            for note in connection.notifies(timeout=WAIT_S):
                if self._stop.is_set():
                    return
                handler = self.handlers.get(note.payload)
                if handler is not None:
                    handler()

    def _open(self) -> Any:
        """A DBAPI connection made as the engine makes them (its URL, its timeouts),
        then detached from its pool: it stays open for as long as it listens."""
        fairy = self.engine.raw_connection()
        fairy.detach()
        connection: Any = fairy.dbapi_connection
        connection.rollback()  # the pool's ping may have begun a transaction
        connection.autocommit = True
        self._connection = connection
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken
                self._connection.close()
            self._connection = None

    def _wake_all(self) -> None:
        for handler in self.handlers.values():
            handler()
