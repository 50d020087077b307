"""Alembic environment: runs against the engine TME hands over (never reads alembic.ini)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
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


def check_foreign_keys(connection: Connection) -> None:
    """Refuse (and so roll back) an upgrade that left a row pointing at nothing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration broke foreign keys (table, rowid, parent): {broken}")


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A migration that builds a table again (batch mode: copy, drop, rename) must
        # not have the drop cascade to the rows that point at the table: SQLite's way
        # is foreign keys off for the migration, checked before it commits. The pragma
        # only takes effect outside a transaction, so before the BEGIN below.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends SQLAlchemy's autobegun transaction (pysqlite sent none)
    try:
        with connection.begin():
            if sqlite:
                # pysqlite runs DDL outside any transaction until a DML statement opens
                # one, so an interrupted upgrade left a half-made schema. Open it here:
                # an upgrade applies whole or not at all. IMMEDIATE takes the write lock
                # before the version is read, so two upgrades at once run one after the
                # other.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            context.configure(
                connection=connection,
                target_metadata=SQLModel.metadata,
                render_as_batch=sqlite,
                compare_type=True,
                include_object=include_object,
            )
            context.run_migrations()
            if sqlite:
                check_foreign_keys(connection)
    finally:
        if sqlite:  # the connection goes back to the pool: as every other one is
            connection.rollback()  # nothing is open after a commit; after an error, this ends it
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
