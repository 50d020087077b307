"""Two transactions at once, deterministically: the second is let go until it has read
what it decides on, or is waiting for a lock, before the first commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session
from waiting import wait_until

from tme.controller.store.sqlite_gate import gate_of


def read_or_locking(
    engine: Engine, thread: threading.Thread, read: str | None, *, writes: bool = True
) -> Callable[[], bool]:
    """Whether `thread` has run a statement containing `read`, or is taking a lock (a
    locking read, or with `writes` any write; on SQLite, waiting for the write gate):
    from then on, what it decides no longer depends on whether the other transaction
    commits first."""
    reached = threading.Event()
    gate = gate_of(engine)

    def before(_conn: Any, _cursor: Any, statement: str, _p: Any, context: Any, _m: Any) -> None:
        if threading.current_thread() is not thread:
            return
        compiled = getattr(context, "compiled", None)
        locking = getattr(getattr(compiled, "statement", None), "_for_update_arg", None)
        writing = writes and not statement.lstrip().upper().startswith("SELECT")
        advisory = "pg_advisory" in statement  # PostgreSQL's advisory locks: a lock too
        if locking is not None or writing or advisory:
            reached.set()

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread() is thread and read is not None and read in statement:
            reached.set()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return lambda: reached.is_set() or bool(gate and gate.waiting)


def race(
    engine: Engine,
    first: Callable[[Session], Any],
    second: Callable[[], Any],
    read: str,
    what: str,
    *,
    writes: bool = True,
) -> None:
    """`first` writes in a transaction left open; `second` then runs on a thread of its
    own until it has read `read` or waits for a lock (read_or_locking; `writes`: any
    write of its own counts as a lock); only then does the first commit. Returns once
    the second has finished."""
    other = threading.Thread(target=second)
    reached = read_or_locking(engine, other, read, writes=writes)
    with Session(engine, expire_on_commit=False) as session:
        first(session)
        session.flush()  # its writes are in, not committed: its transaction goes on
        other.start()
        wait_until(reached, timeout=10, what=what)
        session.commit()
    other.join(timeout=10)
    assert not other.is_alive()
