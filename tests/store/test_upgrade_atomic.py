"""An upgrade that stops midway leaves the database as it was, and runs again.

pysqlite runs DDL outside any transaction, so on SQLite an upgrade stopped midway
(Ctrl-C, a failing migration) used to keep what it had made without recording the
revision, and every later upgrade failed on it ("table ... already exists").
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine

from tme.controller.store import db
from tme.controller.store.db import current_revision, head_revision, upgrade

BREAK = "TME_TEST_BREAK_MIGRATION"
# A migration that fails after its first statement, while BREAK is set.
FAILING = f'''"""half made"""

import os

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_made", sa.Column("id", sa.Integer(), primary_key=True))
    if os.environ.get("{BREAK}"):
        raise RuntimeError("the migration failed midway")


def downgrade() -> None:
    op.drop_table("half_made")
'''


def schema(engine: Engine) -> dict[str, set[str]]:
    """Every table with its indexes."""
    found = inspect(engine)
    return {
        table: {str(index["name"]) for index in found.get_indexes(table)}
        for table in found.get_table_names()
    }


@pytest.mark.parametrize("stop_at", [2, 9])
def test_interrupted_upgrade_keeps_the_previous_revision(
    empty_engine: Engine, stop_at: int
) -> None:
    upgrade(empty_engine, "0001")  # an installation at an earlier revision
    before = schema(empty_engine)
    statements = 0

    def interrupt(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal statements
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            statements += 1
            if statements == stop_at:
                raise KeyboardInterrupt("Ctrl-C during tme db upgrade")

    event.listen(empty_engine, "before_cursor_execute", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            upgrade(empty_engine)
    finally:
        event.remove(empty_engine, "before_cursor_execute", interrupt)

    assert current_revision(empty_engine) == "0001"
    assert schema(empty_engine) == before
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()


def test_failed_migration_leaves_no_table_behind(
    empty_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_engine)
    migrations = tmp_path / "migrations"
    shutil.copytree(db.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0099_half_made.py").write_text(FAILING)
    previous = current_revision(empty_engine)
    monkeypatch.setattr(db, "MIGRATIONS", migrations)
    monkeypatch.setenv(BREAK, "1")

    with pytest.raises(RuntimeError, match="failed midway"):
        upgrade(empty_engine)
    assert current_revision(empty_engine) == previous
    assert "half_made" not in inspect(empty_engine).get_table_names()

    monkeypatch.delenv(BREAK)
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    assert "0099" in head_revision().split("+")
    assert "half_made" in inspect(empty_engine).get_table_names()
