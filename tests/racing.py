"""Two transactions at once, deterministically: the second is let go until it has read
what it decides on, or is waiting for a lock, before the first commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

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
        if locking is not None or writing:
            reached.set()

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread() is thread and read is not None and read in statement:
            reached.set()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return lambda: reached.is_set() or bool(gate and gate.waiting)
