"""Concurrent audit appends share transactions (group commit) and still form one
unbroken chain: rows asked for while a write is in progress go in the next one, and
a row that cannot be written fails only its own caller."""

from __future__ import annotations

import threading

from sqlalchemy import event
from waiting import wait_until

from tme.controller.services import audit
from tme.controller.services.audit import verify_chain
from tme.controller.store.db import session_scope

KEY = b"tme-local-audit-key: public, set auth.audit_key"
WRITERS = 7


def _commits(engine) -> list[int]:  # type: ignore[no-untyped-def]
    counted: list[int] = []
    event.listen(engine, "commit", lambda _conn: counted.append(1))
    return counted


class _HeldWrite:
    """Holds the next audit write open until released, so others queue behind it."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.holding = threading.Event()
        self.release = threading.Event()
        event.listen(engine, "before_cursor_execute", self._hold)

    def _hold(self, _conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "INSERT INTO audit" in statement and not self.holding.is_set():
            self.holding.set()
            self.release.wait(30)

    def run(self, calls: list[threading.Thread]) -> None:
        """Start the first call, queue the others behind its write, then let all go."""
        calls[0].start()
        wait_until(self.holding.is_set, what="the first write to be in progress")
        for call in calls[1:]:
            call.start()
        queued = len(calls) - 1
        wait_until(lambda: len(audit._APPENDER._waiting) == queued, what="the others to queue")
        self.release.set()
        for call in calls:
            call.join(30)
        event.remove(self.engine, "before_cursor_execute", self._hold)


def test_appends_waiting_behind_a_write_share_the_next_transaction(app_engine) -> None:  # type: ignore[no-untyped-def]
    audit.use_key(app_engine, _LocalSettings())
    audit.record(app_engine, "first")  # the chain has a head before the race
    held = _HeldWrite(app_engine)
    commits = _commits(app_engine)
    writes: list[str] = []

    def note(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith(("INSERT", "UPDATE")):
            writes.append(" ".join(statement.split()[:3]))

    event.listen(app_engine, "before_cursor_execute", note)
    held.run(
        [
            threading.Thread(target=audit.record, args=(app_engine, f"change {i}"))
            for i in range(WRITERS + 1)
        ]
    )
    event.remove(app_engine, "before_cursor_execute", note)
    assert len(commits) == 2  # the held write, then all the others together
    # Each transaction: its rows in one INSERT (ids and MACs known before writing, no
    # row written twice), then the head.
    assert writes == ["INSERT INTO audit_log", "UPDATE audit_head SET"] * 2
    with session_scope(app_engine) as session:
        assert verify_chain(session, KEY) == (WRITERS + 2, [])


def test_a_row_that_cannot_be_written_fails_only_its_caller(app_engine) -> None:  # type: ignore[no-untyped-def]
    audit.use_key(app_engine, _LocalSettings())
    outcomes: dict[str, str] = {}

    def append(action: str, details: dict[str, object]) -> None:
        try:
            audit.record(app_engine, action, details=details)
            outcomes[action] = "written"
        except Exception as exc:  # what the driver raises for an unstorable row
            outcomes[action] = type(exc).__name__

    held = _HeldWrite(app_engine)
    calls = [threading.Thread(target=append, args=("held", {}))]
    calls += [threading.Thread(target=append, args=(f"good {i}", {})) for i in range(3)]
    calls.append(threading.Thread(target=append, args=("bad", {"not json": object()})))
    held.run(calls)
    assert outcomes.pop("bad") != "written"
    assert set(outcomes.values()) == {"written"} and len(outcomes) == 4
    with session_scope(app_engine) as session:
        assert verify_chain(session, KEY) == (4, [])


class _Secret:
    def get_secret_value(self) -> str:
        return ""


class _Auth:
    audit_key = _Secret()


class _LocalSettings:
    auth = _Auth()
