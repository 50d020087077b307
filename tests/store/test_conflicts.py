"""A transaction that loses a deadlock on PostgreSQL is run again (store/conflicts.py),
in a new session, so what it arranged for after its commit happens once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from deadlocks import Rival, look_for_deadlocks_soon
from pg_database import PgDatabase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from tme.controller.store.conflicts import in_transaction, lost_conflict
from tme.controller.store.db import make_engine

pytestmark = pytest.mark.external_service

BUMP = text("UPDATE pair SET n = n + 1 WHERE id = :id")


@pytest.fixture
def pair(pg_database: PgDatabase) -> Iterator[Engine]:
    """An engine on a database with two rows, 1 and 2, whose connections look for a
    deadlock 20 ms into a lock wait (PostgreSQL's default: a second)."""
    look_for_deadlocks_soon(pg_database)
    with psycopg.connect(pg_database.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    engine = make_engine(pg_database.url())
    yield engine
    engine.dispose()


def _deadlocking_work(
    engine: Engine, rival_blocked: threading.Event, holds_row_1: threading.Event, tries: list[int]
) -> Any:
    """Bump row 1 then row 2; on its first try, row 2 only once the rival waits for
    row 1, which closes the cycle. Each try asks to be told of its commit."""

    def work(session: Session) -> int:
        tries.append(len(tries) + 1)
        event.listen(session, "after_commit", lambda _s: committed.append(len(tries)), once=True)
        session.execute(BUMP, {"id": 1})
        if len(tries) == 1:
            holds_row_1.set()
            assert rival_blocked.wait(10)
        session.execute(BUMP, {"id": 2})
        return len(tries)

    committed: list[int] = []
    return work, committed


def _rows(engine: Engine) -> dict[int, int]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, n FROM pair")).all())  # type: ignore[arg-type]


@pytest.fixture
def deadlock(
    pair: Engine, pg_database: PgDatabase
) -> Iterator[tuple[Rival, Any, list[int], list[int]]]:
    """The rival (it holds row 2, then wants row 1 once the work holds it) and the work
    it deadlocks with on its first try, with the tries made and the commits seen."""
    holds_row_1 = threading.Event()
    bump = "UPDATE pair SET n = n + 1 WHERE id = %s"
    rival = Rival(pg_database.url(), (bump, (2,)), (bump, (1,)), holds_row_1)
    tries: list[int] = []
    work, committed = _deadlocking_work(pair, rival.watch(pair), holds_row_1, tries)
    yield rival, work, tries, committed
    rival.close()


def test_a_transaction_that_loses_a_deadlock_is_run_again_once(pair: Engine, deadlock) -> None:
    rival, work, tries, committed = deadlock
    try:
        assert in_transaction(pair, work) == 2
    finally:
        rival.close()
    assert tries == [1, 2]
    assert committed == [2]  # the lost try's after-commit wish died with it
    # each transaction's bumps counted once: the lost try's were rolled back
    assert _rows(pair) == {1: 2, 2: 2}


def test_the_last_try_lost_raises_the_conflict(pair: Engine, deadlock) -> None:
    rival, work, tries, committed = deadlock
    try:
        with pytest.raises(OperationalError) as raised:
            in_transaction(pair, work, attempts=1)
    finally:
        rival.close()
    assert lost_conflict(raised.value)
    assert (tries, committed) == ([1], [])
    assert _rows(pair) == {1: 1, 2: 1}  # the rival's bumps only


def test_other_errors_are_not_run_again(pair: Engine) -> None:
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception) as raised:
        in_transaction(pair, work)
    assert not lost_conflict(raised.value)
    assert tries == [1]
