"""task revision: its definition's revision, the ETag If-Match names

Revision ID: 0016
Revises: 0015

Each change of a task through the API (PATCH) adds one; GET answers it as the task's
ETag, and a PATCH with If-Match naming another is refused with 412, so two clients
editing one task never overwrite each other's change unseen. Existing tasks start at 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("revision")
