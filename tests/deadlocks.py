"""A real deadlock on PostgreSQL, made to order, for tests of what loses one.

The transaction under test locks a row; a rival connection holds another row and,
once told, wants the first; the transaction under test then wants the rival's row,
which closes the cycle. The rival looks for a deadlock only after a minute and the
test database's other connections after 20 ms (`look_for_deadlocks_soon`), so the
transaction PostgreSQL ends is always the one under test, on the try that closed it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from pg_database import PgDatabase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from waiting import wait_until

from tme.controller.store.db import make_engine, upgrade

Statement = tuple[str, tuple[Any, ...]]  # SQL with %s placeholders, and its parameters


def look_for_deadlocks_soon(pg_database: PgDatabase) -> None:
    """Connections to the database made from now on look for a deadlock 20 ms into a
    lock wait (PostgreSQL's default: a second)."""
    with psycopg.connect(_plain(pg_database.url()), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{pg_database.name}\" SET deadlock_timeout = '20ms'")


def upgraded_engine(pg_database: PgDatabase) -> Iterator[Engine]:
    """An engine on the database, upgraded, whose connections look for a deadlock soon
    (a fixture's body: `yield from upgraded_engine(pg_database)`)."""
    look_for_deadlocks_soon(pg_database)
    engine = make_engine(pg_database.url())
    upgrade(engine)
    yield engine
    engine.dispose()


class Rival:
    """Runs `holds` at once, and `wants` once `go` is set (it waits there until the
    transaction under test ends), then commits."""

    def __init__(self, url: str, holds: Statement, wants: Statement, go: threading.Event):
        self.conn = psycopg.connect(_plain(url))
        self.conn.execute("SET deadlock_timeout = '1min'")
        self.pid = self.conn.info.backend_pid
        self.conn.execute(*holds)
        self.wants, self.go = wants, go
        self.thread = threading.Thread(target=self._want)
        self.thread.start()

    def _want(self) -> None:
        self.go.wait(10)
        self.conn.execute(*self.wants)
        self.conn.commit()

    def blocked(self, engine: Engine) -> bool:
        with engine.connect() as connection:
            blockers = connection.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid})
            return bool(blockers.scalar_one())

    def watch(self, engine: Engine) -> threading.Event:
        """An event set once the rival waits for the row it wants (on a thread of its
        own, joined by `close`)."""
        blocked = threading.Event()

        def watch() -> None:
            wait_until(lambda: self.blocked(engine), what="the rival waiting for its row")
            blocked.set()

        self._watcher = threading.Thread(target=watch)
        self._watcher.start()
        return blocked

    def close(self) -> None:
        watcher = getattr(self, "_watcher", None)
        if watcher is not None:
            watcher.join(10)
        self.thread.join(10)
        self.conn.close()


def stall_first_try(
    engine: Engine,
    holds: Callable[[str], bool],
    stalls: Callable[[str], bool],
    held: threading.Event,
    rival_blocked: threading.Event,
) -> None:
    """On the engine's first statement `holds` matches, set `held` (the rival may go
    for that row); before its first statement `stalls` matches, wait for the rival to
    be blocked, so that statement closes the cycle. Later tries run freely."""
    armed = [True]

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and holds(statement):
            held.set()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if armed[0] and stalls(statement):
            armed[0] = False
            assert rival_blocked.wait(10)

    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "before_cursor_execute", before)


def _plain(url: str) -> str:
    return url.replace("+psycopg", "")
