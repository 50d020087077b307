"""Migration 0010 on a SQLite database in use: every table built again keeps its rows,
its indexes and its cascades, and the ids handed out before are not handed out again.

Building a table again means dropping the old one; with foreign keys on, dropping
`tasks` would have deleted every run. migrations/env.py turns them off for the upgrade
and checks them before the commit, and the connection goes back to the pool with them
on again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.services.bootstrap import create_admin
from tme.controller.store.db import (
    current_revision,
    make_engine,
    session_scope,
    upgrade,
)
from tme.controller.store.models import Run
from tme.schemas import TaskCreate
from tme.states import RunState

OLD_HEADS = ("0009", "0005", "0006", "0007")  # the four branches before 0010 joined them
REBUILT = ("tasks", "run_events", "run_logs", "outbox", "users", "api_tokens")
KEPT = (*REBUILT, "runs", "task_policies", "task_dependencies", "run_links")


@contextmanager
def _newest_columns(engine: Engine) -> Iterator[None]:
    """While the old schema is filled through the newest services: the columns those
    write that the old tables lack (a `tasks.revision` added after 0010), added with
    their defaults, then dropped again, so the upgrade meets the old tables as they were."""
    added: list[tuple[str, str]] = []
    with engine.begin() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in KEPT:
                continue
            have = {c["name"] for c in inspect(connection).get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=connection.dialect)
                default = column.server_default.arg if column.server_default is not None else None
                assert default is not None, f"{table.name}.{column.name} needs a server default"
                connection.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} NOT NULL"
                    f" DEFAULT {default}"
                )
                added.append((table.name, column.name))
    yield
    with engine.begin() as connection:
        for table_name, column_name in added:
            connection.exec_driver_sql(f"ALTER TABLE {table_name} DROP COLUMN {column_name}")


def _fill(engine: Engine) -> int:
    """Tasks with runs, events, logs, a policy and a dependency; the newest task's id."""
    with _newest_columns(engine):
        return _fill_tasks(engine)


def _fill_tasks(engine: Engine) -> int:
    create_admin(engine, "admin")
    newest = 0
    with session_scope(engine) as session:
        first, _ = service.create_task(
            session, TaskCreate(name="first", overlap={"policy": "skip"})
        )
        service.create_task(session, TaskCreate(name="after", depends_on=[{"task": first.id}]))
        for i in range(5):
            task, _ = service.create_task(session, TaskCreate(name=f"t{i}"))
            run = session.get(Run, task.latest_run_id)
            if run is not None:
                run_service.transition(session, run, RunState.succeeded, reason="done")
                run_service.append_log(session, run, "a\nb")
            newest = max(newest, task.id or 0)
    return newest


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
            for table in KEPT
        }


def _indexes(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
        return {(str(table), str(sql)) for table, sql in rows}


def test_an_upgrade_keeps_rows_indexes_and_cascades(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/in-use.db")
    for head in OLD_HEADS:
        upgrade(engine, head)
    newest = _fill(engine)
    before_counts, before_indexes = _counts(engine), _indexes(engine)
    assert before_counts["runs"] >= 6 and before_counts["run_events"] >= 5

    upgrade(engine, "0010")

    assert current_revision(engine) == "0010"
    assert _counts(engine) == before_counts
    assert _indexes(engine) == before_indexes
    with engine.connect() as connection:  # pooled connections check foreign keys again
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []

    upgrade(engine)  # the rest of the way: the services below are the newest schema's
    with session_scope(engine) as session:
        service.delete_task(session, newest)
    after_delete = _counts(engine)
    assert after_delete["runs"] == before_counts["runs"] - 1  # the cascade still runs
    assert after_delete["run_events"] < before_counts["run_events"]
    with session_scope(engine) as session:
        again, _ = service.create_task(session, TaskCreate(name="after the upgrade"))
    assert again.id == newest + 1 and again.id > newest
    engine.dispose()


def test_a_downgrade_and_upgrade_again_keep_the_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/round-trip.db")
    upgrade(engine)
    _fill(engine)
    before = _counts(engine)
    from alembic import command

    from tme.controller.store.db import alembic_config

    command.downgrade(alembic_config(engine), "0009")
    assert _counts(engine) == before
    upgrade(engine)
    assert _counts(engine) == before
    engine.dispose()
