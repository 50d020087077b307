"""ids never reused: the SQLite tables with numeric ids become AUTOINCREMENT

Revision ID: 0010
Revises: 0005, 0006, 0007, 0009

Without AUTOINCREMENT, SQLite gives a new row the largest id in its table plus one: after
the newest task was deleted, the next task got its id, and the next run events and log
lines the ids of its events and lines. The change feed and the notifier read ids above
the last they read, so they skipped those rows (a failure went unnotified), and a
client naming a task by id could reach another task than the one it meant.

SQLite can only add AUTOINCREMENT by building each table again (Alembic's batch
mode: a copy, the old table dropped, the copy renamed). Foreign keys are off while
migrations run (migrations/env.py), so dropping `tasks` does not cascade to its runs,
and they are checked before the upgrade commits. PostgreSQL's sequences never go
back: nothing changes there. Also joins the four branches of the migrations.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = ("0005", "0006", "0007", "0009")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "tasks",
    "run_events",
    "run_logs",
    "outbox",
    "users",
    "api_tokens",
    "notification_rules",
    "notification_deliveries",
)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    kwargs = {"sqlite_autoincrement": True} if autoincrement else {}
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs=kwargs):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
