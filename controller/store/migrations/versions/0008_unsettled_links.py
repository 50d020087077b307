"""unsettled links: a partial index of the run links not settled yet

Revision ID: 0008
Revises: 0003

The workflow engine's sweep finds final runs the event cursor went by through
their unsettled links; the index holds only those rows, so the sweep's cost follows
the runs in flight, not every run ever kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_unsettled = sa.column("settled", sa.Boolean).is_(False)


def upgrade() -> None:
    op.create_index(
        "ix_run_links_unsettled",
        "run_links",
        ["run_id"],
        sqlite_where=_unsettled,
        postgresql_where=_unsettled,
    )


def downgrade() -> None:
    op.drop_index("ix_run_links_unsettled", table_name="run_links")
