"""A transaction that lost a conflict with concurrent work is run again.

PostgreSQL ends one of two transactions that wait for each other's row locks (a
deadlock, SQLSTATE 40P01: a status report and the scheduling pass moving the same runs
in another order), and one whose snapshot a concurrent commit made stale under a
stricter isolation (a serialization failure, 40001). The loser's work was rolled back
whole and, run again, usually goes through at once: the other transaction went on.
Both arrive as an OperationalError, which every part otherwise takes for an outage, so
the API answered 503 "database unavailable" and the scheduling pass logged an error.

`in_transaction` runs a unit of work in a transaction of its own, and again in a new
session (a short, jittered pause between tries) while it loses such a conflict. Each
try starts from a new session, so what a try arranged for after its commit (a wake of
the dispatcher: outbox.wake_after_commit) dies with it and happens once, for the try
that committed. Only after the last try is the error raised; the API then answers 503
saying the request conflicted with concurrent work and is safe to send again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from tme.controller.store.db import session_scope

log = logging.getLogger(__name__)

T = TypeVar("T")

# deadlock_detected, serialization_failure: the transaction is rolled back, and may be
# run again as it was.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
# Tries in all: a conflict lost this often in a row is contention that a few more
# tries will not end, and the client (or the next tick) is better told.
ATTEMPTS = 4
# The pause before try n+1 is drawn from [0, BACKOFF_S * 2**(n-1)]: the two
# transactions that met do not meet again in step, and three pauses add up to well
# under a second, little beside the second PostgreSQL waits before it looks for a
# deadlock (deadlock_timeout).
BACKOFF_S = 0.05


def lost_conflict(error: BaseException) -> bool:
    """Whether `error` is a transaction rolled back for a conflict with concurrent work
    (deadlock or serialization failure), which may be run again as it was."""
    orig = error.orig if isinstance(error, DBAPIError) else error
    # psycopg names it sqlstate, psycopg2 pgcode
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in CONFLICT_SQLSTATES


def in_transaction(
    engine: Engine,
    work: Callable[[Session], T],
    *,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> T:
    """`work(session)` in one transaction, committed on return; run again from the start
    in a new session while it loses a conflict (`lost_conflict`), `attempts` tries in
    all. The last try's error is raised; any other error at once."""
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(engine) as session:
                return work(session)
        except DBAPIError as exc:
            if attempt == attempts or not lost_conflict(exc):
                raise
            log.info(
                "transaction lost a conflict with concurrent work (try %d of %d), running"
                " it again: %s",
                attempt,
                attempts,
                str(exc.orig).splitlines()[0] if exc.orig is not None else exc,
            )
            time.sleep(random.uniform(0, backoff_s * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # the last try returned or raised
