"""One writer at a time on a SQLite file, handed over the moment it is free.

SQLite lets one connection write at a time. Another that tries gets SQLITE_BUSY,
and its busy handler sleeps and retries (1, 2, 5, 10 ... up to 100 ms between
tries), so with several writer threads in one controller (API, dispatcher, event
consumer, scheduler) a write could wait tens of milliseconds for a lock freed long
before. The gate is an in-process lock taken at a connection's first write and
given back when the connection returns to the pool (after its commit or rollback):
the next writer wakes at once. Plain reads never take it; WAL lets them run beside
the writer. A locking read (`SELECT ... FOR UPDATE`, whose clause SQLite drops) takes
it as a write does: what it reads decides what its transaction writes, so no other
writer may commit in between (on PostgreSQL the clause locks the rows read). Without
this, the dispatcher could read a run as queued, the event consumer commit its
result, and the dispatcher then write `dispatched` over the final state. A thread
that already holds the gate may take it again (a nested session). Past the timeout
a writer goes on without the gate and SQLite decides, as before.

Writers that finish work already under way, the dispatcher (a command confirmed by
the broker) and the event consumer (what the machines answered), write within
`pipeline_writes()` and go before waiting API writers (a new task): when the
API floods the gate, commands still reach the machines and results are still
recorded promptly, and the flood waits instead (its clients feel the back-pressure).
A pipeline writer waits at most for the one write in progress; API writers are not
starved, since a pipeline writer reads between its writes.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

HELD = "tme_write_gate"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_THREAD = threading.local()


@contextmanager
def pipeline_writes() -> Iterator[None]:
    """The calling thread's writes within go before those of waiting API writers."""
    before = getattr(_THREAD, "pipeline", False)
    _THREAD.pipeline = True
    try:
        yield
    finally:
        _THREAD.pipeline = before


class WriteGate:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.waiting = 0  # writers waiting now (for tests and diagnostics)
        # Totals since start, for /metrics and benchmarks: the rate of held_s is the
        # share of time SQLite's one writer was busy (near 1: writes queue).
        self.held_s = 0.0
        self.waited_s = 0.0
        self.writes = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)  # for API writers
        self._free_first = threading.Condition(self._lock)  # for pipeline writers
        self._first_waiting = 0
        self._owner: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    def enter(self) -> bool:
        """Wait for the gate; False when it stayed closed past the timeout."""
        me = threading.get_ident()
        first = getattr(_THREAD, "pipeline", False)
        with self._lock:
            if self._owner != me and (self._depth or (self._first_waiting and not first)):
                self.waiting += 1
                self._first_waiting += first
                opened = False
                began = time.perf_counter()
                try:
                    opened = (self._free_first if first else self._free).wait_for(
                        lambda: self._depth == 0 and (first or not self._first_waiting),
                        self.timeout_s,
                    )
                finally:
                    self.waited_s += time.perf_counter() - began
                    self.waiting -= 1
                    self._first_waiting -= first
                    if first and not opened and not self._first_waiting and not self._depth:
                        self._free.notify()  # a pipeline writer gave up on a free gate
                if not opened:
                    log.warning("SQLite writer waited %.0f s for the write gate", self.timeout_s)
                    return False
            self._owner = me
            self._depth += 1
            if self._depth == 1:
                self._since = time.perf_counter()
                self.writes += 1
            return True

    def leave(self) -> None:
        with self._lock:
            if self._depth == 1:
                self.held_s += time.perf_counter() - self._since
            self._depth = max(0, self._depth - 1)
            if self._depth == 0:
                self._owner = None
                (self._free_first if self._first_waiting else self._free).notify()


def install(engine: Engine, timeout_s: float = 30.0) -> WriteGate:
    gate = WriteGate(timeout_s)

    def before_cursor_execute(
        conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, *_args: Any
    ) -> None:
        if conn.info.get(HELD):
            return
        if not statement.lstrip()[:7].upper().startswith(WRITES) and not _locks(context):
            return
        if gate.enter():
            conn.info[HELD] = True

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(HELD, False):
            gate.leave()

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    event.listen(engine, "checkin", checkin)
    _GATES[engine] = gate
    return gate


def _locks(context: Any) -> bool:
    """Whether a statement is a locking read: compiled from a select with_for_update()."""
    compiled = getattr(context, "compiled", None)
    return getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is not None


def gate_of(engine: Engine) -> WriteGate | None:
    return _GATES.get(engine)


_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
