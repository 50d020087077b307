"""An id, once handed out, is never handed out again, on SQLite as on PostgreSQL.

SQLite gives a new row the largest id in the table plus one, so deleting the newest
task gave its id to the next task made, and its runs' event and log ids to the next
events: a script that deleted "task 42" twice deleted a task it never saw, and a live
stream, and the notifier, having read up to the deleted events, skipped the new ones,
which came with ids they had already passed (change_feed reads ids above the last one
it read): a failure right after such a delete was neither shown live nor notified. The
tables with numeric ids are AUTOINCREMENT on SQLite (migration 0010); PostgreSQL's
sequences never go back.
"""

from __future__ import annotations

from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select

from tme.controller.change_feed import ChangeFeed
from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run, RunEvent, RunLog
from tme.schemas import TaskCreate
from tme.states import RunState


def _declared_never_reused() -> set[str]:
    """The tables the models declare AUTOINCREMENT on SQLite (NEVER_REUSE_IDS)."""
    import tme.controller.notifications.models  # noqa: F401  (registers its tables)

    return {
        table.name
        for table in SQLModel.metadata.tables.values()
        if table.dialect_kwargs.get("sqlite_autoincrement")
    }


def _finished_task(engine: Engine, name: str) -> int:
    """A task whose run has succeeded, with a log line: events and a log row written."""
    with session_scope(engine) as session:
        task, _created = service.create_task(session, TaskCreate(name=name))
        run = session.get(Run, task.latest_run_id)
        assert run is not None and task.id is not None
        run_service.transition(session, run, RunState.succeeded, reason="done")
        run_service.append_log(session, run, "line")
        return task.id


def _newest(engine: Engine, column: object) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.max(column))).one() or 0)


def test_the_newest_tasks_ids_are_not_given_again_after_its_delete(engine: Engine) -> None:
    _finished_task(engine, "keep")
    doomed = _finished_task(engine, "doomed")
    seen_event, seen_log = _newest(engine, RunEvent.id), _newest(engine, RunLog.id)
    with session_scope(engine) as session:
        service.delete_task(session, doomed)
    assert _newest(engine, RunEvent.id) < seen_event  # its rows were the newest

    again = _finished_task(engine, "made after the delete")
    assert again > doomed
    assert _newest(engine, RunEvent.id) > seen_event
    assert _newest(engine, RunLog.id) > seen_log


def test_a_feed_that_read_the_deleted_events_still_gets_the_next(engine: Engine) -> None:
    feed = ChangeFeed(engine)
    _finished_task(engine, "keep")
    doomed = _finished_task(engine, "doomed")
    read_up_to = feed.last_run_event_id()
    with session_scope(engine) as session:
        service.delete_task(session, doomed)
    again = _finished_task(engine, "made after the delete")
    changes, _last = feed.runs_after(read_up_to)
    assert again in {change.task_id for change in changes}
    # the notifier reads only the states its rules want, the same way
    finals, _last = feed.runs_after(read_up_to, states=frozenset({RunState.succeeded.value}))
    assert again in {change.task_id for change in finals}


def test_sqlite_tables_with_numeric_ids_are_autoincrement(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's sequences never go back; the tests above hold there too
    with engine.connect() as connection:
        sql = dict(
            connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            ).all()
        )
    declared = _declared_never_reused()
    assert {"tasks", "run_events", "run_logs", "notification_rules"} <= declared
    missing = [name for name in sorted(declared) if "AUTOINCREMENT" not in sql[name]]
    assert not missing, f"tables that can give a deleted row's id again: {missing}"
