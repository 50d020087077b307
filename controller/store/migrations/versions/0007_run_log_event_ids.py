"""run log event ids: the agent event a log line came with

Revision ID: 0007
Revises: 0001

A log line keeps the id of the event that carried it, so a redelivered event does
not append its lines again. Older lines keep none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", _str(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_run_logs_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_logs_event_id"))
        batch_op.drop_column("event_id")
