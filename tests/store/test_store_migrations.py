"""Migrations: an empty database upgrades to head; the controller refuses empty or stale ones."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from tme.controller.store.db import check_schema, current_revision, head_revision, upgrade
from tme.errors import SchemaOutOfDate

TABLES = {
    "tasks",
    "task_dependencies",
    "runs",
    "run_events",
    "run_logs",
    "idempotency_keys",
    "outbox",
    "sites",
    "agents",
    "devices",
}


def test_empty_database_is_refused_with_the_fix(empty_engine: Engine) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"empty.*run `tme db upgrade`") as info:
        check_schema(empty_engine)
    assert info.value.details == {"current": None, "head": head_revision()}


def test_upgrade_from_empty_to_head_and_again(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    assert set(inspect(empty_engine).get_table_names()) >= TABLES
    check_schema(empty_engine)  # no error
    upgrade(empty_engine)  # a second run changes nothing
    assert current_revision(empty_engine) == head_revision()


def test_stale_database_is_refused(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.begin() as connection:
        # the first revision in place of every head (there may be several branches); a
        # made-up one would be a revision of a newer TME, which upgrading cannot help
        connection.execute(text("DELETE FROM alembic_version"))
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    with pytest.raises(SchemaOutOfDate, match=r"at revision 0001,.*tme db upgrade"):
        check_schema(empty_engine)


def test_schema_matches_the_models(empty_engine: Engine) -> None:
    """The migrations create what the models declare (no forgotten revision)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import tme.controller.store.models  # noqa: F401  (registers the tables)

    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"
