"""Alembic environment: runs against the engine TME hands over (never reads alembic.ini)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

from tme.controller.store import models  # noqa: F401  (registers the tables)

# Tables in TME's database that no migration owns: APScheduler creates and keeps its
# job store itself (controller/scheduler.py), so autogenerate must neither drop it
# nor report it.
FOREIGN_TABLES = frozenset({"tme_scheduler_jobs"})

config = context.config
engine = config.attributes["engine"]


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave the tables of FOREIGN_TABLES, and their indexes, out of every comparison."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in FOREIGN_TABLES


with engine.begin() as connection:
    if connection.dialect.name == "sqlite":
        # pysqlite runs DDL outside any transaction until a DML statement opens one, so
        # an interrupted upgrade left a half-made schema. Open it here: an upgrade
        # applies whole or not at all. IMMEDIATE takes the write lock before the
        # version is read, so two upgrades at once run one after the other.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    context.run_migrations()
