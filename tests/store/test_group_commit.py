"""Group commit: what is asked for while a write is in progress goes together in the
next write, each caller still gets its own result or error; REST creates use it, so
concurrent requests share a transaction and each still gets its own answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from waiting import wait_until

from tme.controller.services import audit
from tme.controller.services.audit import ChangeAudit, verify_chain
from tme.controller.services.task_commit import CREATES, create_committed
from tme.controller.store.db import session_scope
from tme.controller.store.group_commit import GroupCommit, by_key
from tme.controller.store.models import Site, Task
from tme.controller.store.security_models import AuditEntry
from tme.errors import ValidationError
from tme.schemas import TaskCreate


class Recorder:
    """A group writer that records its groups; the first write waits for `go`."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.go = threading.Event()
        self.go.set()

    def __call__(self, items: list[str]) -> list[str | BaseException]:
        self.go.wait(10)
        self.groups.append(list(items))
        return [item.upper() for item in items]


def _submit_in_threads(
    commit: GroupCommit[Any, Any], items: list[Any], outcomes: dict[Any, Any]
) -> list[threading.Thread]:
    def submit(item: Any) -> None:
        try:
            outcomes[item] = commit.submit(item)
        except Exception as exc:  # each caller's own error is what is checked
            outcomes[item] = exc

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads


def test_a_lone_item_is_written_at_once() -> None:
    writer = Recorder()
    commit = GroupCommit(writer)
    assert commit.submit("a") == "A"
    assert writer.groups == [["a"]] and commit.writes == 1


def _asked_during_a_write(
    commit: GroupCommit[str, str], writer: Recorder, later: list[str]
) -> dict[str, Any]:
    """Each item's outcome: "first" is written, `later` asked for while that write is in
    progress, then the writes go on."""
    writer.go.clear()  # the first write stays in progress
    outcomes: dict[str, Any] = {}
    threads = _submit_in_threads(commit, ["first"], outcomes)
    wait_until(lambda: commit.writing, what="the first write in progress")
    threads += _submit_in_threads(commit, later, outcomes)
    wait_until(lambda: commit.queued == len(later), what="the later items waiting")
    writer.go.set()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_items_asked_for_during_a_write_go_together_in_the_next() -> None:
    writer = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(writer)
    outcomes = _asked_during_a_write(commit, writer, ["b", "c", "d"])
    assert writer.groups[0] == ["first"]
    assert sorted(writer.groups[1]) == ["b", "c", "d"] and len(writer.groups) == 2
    assert outcomes == {"first": "FIRST", "b": "B", "c": "C", "d": "D"}


def test_a_group_is_at_most_max_group_items() -> None:
    writer = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(writer, max_group=2)
    outcomes = _asked_during_a_write(commit, writer, ["b", "c", "d"])
    assert [len(group) for group in writer.groups] == [1, 2, 1]
    assert len(outcomes) == 4


def test_by_key_writes_each_key_apart_and_a_bad_value_fails_only_its_caller() -> None:
    calls: list[tuple[str, list[str]]] = []

    def write_many(key: str, values: list[str]) -> list[str]:
        calls.append((key, list(values)))
        if "bad" in values:
            raise ValueError("bad value")
        return [f"{key}:{v}" for v in values]

    write = by_key(write_many)
    outcomes = write([("db1", "a"), ("db2", "x"), ("db1", "bad"), ("db1", "c")])
    assert outcomes[0] == "db1:a" and outcomes[1] == "db2:x" and outcomes[3] == "db1:c"
    assert isinstance(outcomes[2], ValueError)
    # db1 together first (refused for its bad value), then each of db1's values alone.
    assert calls == [
        ("db1", ["a", "bad", "c"]),
        ("db1", ["a"]),
        ("db1", ["bad"]),
        ("db1", ["c"]),
        ("db2", ["x"]),
    ]


def test_a_failing_writer_fails_its_group_and_the_next_write_goes_on() -> None:
    broken = True

    def write(items: list[str]) -> list[str | BaseException]:
        if broken:
            raise RuntimeError("database gone")
        return list(items)

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="database gone"):
        commit.submit("a")
    broken = False
    assert commit.submit("b") == "b"


# --- REST creates, on both dialects --------------------------------------------------


def _read(name: str, **extra: Any) -> TaskCreate:
    return TaskCreate.model_validate(
        {
            "name": name,
            "op": "modbus.read",
            "target": {"site": "plant-1", "agent": "skid-a", "device": "pump1"},
            "params": {"point": "level"},
            **extra,
        }
    )


@contextmanager
def _writes_held(engine: Engine) -> Iterator[None]:
    """Hold the database's write lock: a create waits for it, the next ones queue."""
    with session_scope(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))
        else:
            session.add(Site(name="holder"))
            session.flush()  # takes the SQLite write gate
        yield


def _queued_behind_the_first(engine: Engine, creates: list[threading.Thread]) -> None:
    """Run the creates so that all but the first queue behind its write, then let go."""
    with _writes_held(engine):
        creates[0].start()
        wait_until(lambda: CREATES.writing, what="the first create writing")
        for create in creates[1:]:
            create.start()
        wait_until(lambda: CREATES.queued == len(creates) - 1, what="the others queued")
    for create in creates:
        create.join(30)


def test_concurrent_creates_share_a_transaction_and_each_gets_its_own_answer(
    engine: Engine,
) -> None:
    outcomes: dict[str, Any] = {}

    def create(label: str, data: TaskCreate, key: str | None = None) -> None:
        try:
            outcomes[label] = create_committed(engine, data, idempotency_key=key)
        except Exception as exc:  # each request's own error is what is checked
            outcomes[label] = exc

    asks = [
        ("first", _read("first"), None),
        ("plain", _read("plain"), None),
        ("keyed", _read("keyed"), "k-1"),
        ("again", _read("keyed"), "k-1"),  # the same request again: a replay
        ("orphan", _read("orphan", depends_on=[{"task": 999_999}]), None),
    ]
    _queued_behind_the_first(engine, [threading.Thread(target=create, args=ask) for ask in asks])
    assert isinstance(outcomes["orphan"], ValidationError)
    created = {label: outcomes[label] for label in ("first", "plain", "keyed", "again")}
    made = {label: was_created for label, (_public, was_created) in created.items()}
    assert made["first"] and made["plain"]
    assert sorted([made["keyed"], made["again"]]) == [False, True]  # one made, one replayed
    assert created["keyed"][0].id == created["again"][0].id
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Task)).one() == 3


def _change(label: str) -> ChangeAudit:
    """The audit row the security layer prepares for a create request."""
    return ChangeAudit(
        action="task.write:create_task",
        actor=f"user-{label}",
        target="POST /api/v1/tasks",
        client="10.0.0.7",
        token_id=7,
        body_summary=lambda: {"fields": ["name", "op", "params", "target"]},
    )


def test_creates_commit_their_audit_rows_with_them(engine: Engine) -> None:
    """Each request's audit row goes in its create's (shared) transaction, chained like
    any other; a refused create writes none here (the security layer then records its
    failure), and no audit transaction of its own is written."""
    changes = {label: _change(label) for label in ("first", "plain", "orphan")}
    asks = [
        ("first", _read("first")),
        ("plain", _read("plain")),
        ("orphan", _read("orphan", depends_on=[{"task": 999_999}])),
    ]
    outcomes: dict[str, Any] = {}

    def create(label: str, data: TaskCreate) -> None:
        try:
            outcomes[label] = create_committed(engine, data, change=changes[label])
        except Exception as exc:  # each request's own error is what is checked
            outcomes[label] = exc

    appends = audit._APPENDER.submitted
    _queued_behind_the_first(engine, [threading.Thread(target=create, args=ask) for ask in asks])
    assert isinstance(outcomes["orphan"], ValidationError)
    assert [changes[label].written for label in ("first", "plain", "orphan")] == [1, 1, 0]
    assert audit._APPENDER.submitted == appends  # no audit transaction of their own
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()  # type: ignore[arg-type]
        assert verify_chain(session, audit.key_for(engine))[1] == []
    by_actor = {row.actor: row for row in rows}
    assert sorted(by_actor) == ["user-first", "user-plain"]
    for label in ("first", "plain"):
        row, (public, _created) = by_actor[f"user-{label}"], outcomes[label]
        assert (row.outcome, row.details["status"], row.details["token_id"]) == ("ok", 201, 7)
        assert row.details["location"] == f"/api/v1/tasks/{public.id}"
