"""gateway status: what a gateway last said of itself in its heartbeat

Revision ID: 0011
Revises: 0010

A gateway reports its links and the commands it holds every heartbeat; the controller
keeps the last report (with when it arrived) on the gateway's row, shows it in the
fleet, and shows a gateway offline once its heartbeats stop. Other rows keep none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("status")
