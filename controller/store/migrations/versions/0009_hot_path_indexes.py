"""hot-path indexes: the run links held in an overlap queue, runs by creation and finish

Revision ID: 0009
Revises: 0008

Settling a finished run asks whether its task has runs held in the overlap queue:
a partial index of the held links answers that from the few rows queued, not by
reading every link kept. The reports and the dashboard read runs by when they were
created or finished, across every task: an index on each time keeps them off a
scan of all runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_held = sa.column("held", sa.Boolean).is_(True)


def upgrade() -> None:
    op.create_index(
        "ix_run_links_held",
        "run_links",
        ["run_id"],
        sqlite_where=_held,
        postgresql_where=_held,
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_finished_at", "runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_finished_at", table_name="runs")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_run_links_held", table_name="run_links")
