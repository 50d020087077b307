"""Audit rows appended from many threads at once, both ways a row is appended (the
group commit of `audit.record`, and `append_rows` inside a change's own transaction,
as a task create does), form one unbroken chain with none lost.

On SQLite the head used to be read before the write gate was taken, so two writers
could chain to the same predecessor: one lost its row to "UNIQUE constraint failed:
audit_log.id" (and a create appending its row that way answered 409).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from dialects import DIALECTS, upgraded_engine
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tme.controller.services import audit
from tme.controller.services.audit import verify_chain
from tme.controller.store.db import session_scope

THREADS = 8  # half through the group commit, half in transactions of their own
ROWS_EACH = 15


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An upgraded database of each dialect with an empty audit log."""
    made = upgraded_engine(request, tmp_path, "audit")
    with made.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))
        connection.execute(text("DELETE FROM audit_head"))
    audit.use_key(made, SimpleNamespace(auth=SimpleNamespace(audit_key=SecretStr(""))))
    yield made
    made.dispose()


def _in_own_transaction(engine: Engine, action: str) -> None:
    """Append one row the way a change that commits its own row does (task_commit)."""
    with session_scope(engine) as session:
        connection = session.connection()
        audit.lock_chain(connection)
        fields = {"actor": "t", "action": action, "target": "", "outcome": "ok"}
        audit.append_rows(
            connection, audit.key_for(engine), [{**fields, "client": "", "details": {}}]
        )


def _through_group_commit(engine: Engine, action: str) -> None:
    audit.record(engine, action, actor="t")


def test_concurrent_appends_lose_no_row_and_keep_one_chain(engine: Engine) -> None:
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        append = _in_own_transaction if number % 2 else _through_group_commit
        start.wait(timeout=30)
        for row in range(ROWS_EACH):
            try:
                append(engine, f"writer {number} row {row}")
            except Exception as exc:  # a lost row: what the driver raised for it
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    with session_scope(engine) as session:
        assert verify_chain(session, audit.key_for(engine)) == (THREADS * ROWS_EACH, [])
