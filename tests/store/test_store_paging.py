"""Store contract: keyset pages stay stable while tasks are inserted; filters; run pages."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.services.paging import encode_cursor
from tme.controller.services.queries import list_runs
from tme.controller.store.db import session_scope
from tme.errors import ValidationError
from tme.schemas import TaskCreate
from tme.states import RunState

_names = itertools.count()


def add(engine: Engine, **fields: Any) -> int:
    with session_scope(engine) as session:
        task, _ = service.create_task(
            session, TaskCreate.model_validate({"name": f"task {next(_names)}", **fields})
        )
        assert task.id is not None
        return task.id


def page(
    engine: Engine, cursor: str | None, limit: int, **filters: Any
) -> tuple[list[int], str | None]:
    with session_scope(engine) as session:
        rows, next_cursor = service.list_tasks(
            session, service.TaskFilters(**filters), limit=limit, cursor=cursor
        )
        return [r.id or 0 for r in rows], next_cursor


def walk(engine: Engine, limit: int, between: Any = None, **filters: Any) -> list[int]:
    seen: list[int] = []
    cursor: str | None = None
    while True:
        ids, cursor = page(engine, cursor, limit, **filters)
        seen.extend(ids)
        if cursor is None:
            return seen
        if between is not None:
            between()


def test_pages_are_stable_while_tasks_are_inserted(engine: Engine) -> None:
    existing = [add(engine) for _ in range(23)]
    inserted: list[int] = []
    seen = walk(engine, 4, between=lambda: inserted.append(add(engine)))
    assert len(inserted) == 5  # 23 rows in pages of 4: five gaps between six pages
    assert seen == sorted(existing, reverse=True), "duplicates or gaps across pages"
    assert len(set(seen)) == len(seen)
    # the new tasks are at the front of a fresh listing
    first, _ = page(engine, None, 5)
    assert first == sorted(inserted, reverse=True)


def test_exact_multiple_of_the_page_ends_cleanly(engine: Engine) -> None:
    ids = [add(engine) for _ in range(6)]
    first, cursor = page(engine, None, 3)
    second, last = page(engine, cursor, 3)
    assert first + second == sorted(ids, reverse=True)
    assert last is None


def test_filters(engine: Engine) -> None:
    a = add(engine, name="Read tank level", op="noop", target={"site": "north", "agent": "a1"})
    b = add(
        engine,
        name="pump",
        description="flush the TANK",
        op="noop",
        target={"site": "north", "agent": "a2"},
    )
    c = add(
        engine,
        name="other",
        op="sleep",
        target={"site": "south", "agent": "a1"},
        params={"seconds": 1},
    )
    d = add(engine, name="reported")
    with session_scope(engine) as session:
        task = service.get_task(session, d)
        run = session.get(service.Run, task.latest_run_id)
        assert run is not None
        run_service.transition(session, run, RunState.running)
    assert walk(engine, 2, site="north") == [b, a]
    assert walk(engine, 2, site="south") == [c]
    assert walk(engine, 2, agent="a1") == [c, a]
    assert walk(engine, 2, op="noop") == [b, a]
    assert walk(engine, 2, op="sleep", agent="a1") == [c]
    assert walk(engine, 1, search="tank") == [b, a]
    assert walk(engine, 1, search="TANK LEV") == [a]
    assert walk(engine, 2, status="running") == [d]
    assert walk(engine, 2, status="pending") == [c, b, a]
    assert walk(engine, 2, site="nowhere") == []
    assert walk(engine, 2, search="%") == []  # a wildcard is a character, not "anything"


def test_runs_page_newest_first(engine: Engine) -> None:
    task_id = add(engine)
    with session_scope(engine) as session:
        task = service.get_task(session, task_id)
        for attempt in range(2, 8):
            run_service.start_run(session, task, reason="again", source="test", attempt=attempt)
    attempts: list[int] = []
    cursor: str | None = None
    while True:
        with session_scope(engine) as session:
            rows, cursor = list_runs(session, task_id, limit=3, cursor=cursor)
            attempts.extend(r.attempt for r in rows)
        if cursor is None:
            break
    assert attempts == list(range(7, 0, -1))


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        "",
        encode_cursor(1, 2),
        encode_cursor("abc"),
        encode_cursor(None),
        encode_cursor([1]),
        "eyJ4IjoxfQ",
    ],
)
def test_bad_task_cursors(engine: Engine, cursor: str) -> None:
    add(engine)
    if cursor == "":
        assert page(engine, cursor, 5)[0]  # empty means "from the start"
        return
    with pytest.raises(ValidationError, match="invalid cursor"):
        page(engine, cursor, 5)


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor("yesterday", "x"),
        encode_cursor("2030-01-01T00:00:00", "x"),
        encode_cursor(5, 6),
        encode_cursor("2030-01-01T00:00:00+00:00"),
    ],
)
def test_bad_run_cursors(engine: Engine, cursor: str) -> None:
    task_id = add(engine)
    with pytest.raises(ValidationError, match="invalid cursor"), session_scope(engine) as session:
        list_runs(session, task_id, limit=5, cursor=cursor)
