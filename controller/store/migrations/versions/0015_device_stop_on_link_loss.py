"""device stop_on_link_loss_s: how long its agent waits without the link before it stops it

Revision ID: 0015
Revises: 0014

A device whose agent config sets `stop_on_link_loss_s` is stopped by its agent (its
safe values written, latched until resumed) once the agent has had no link to the
controller for that long. The agent says the setting in its presence; the controller
keeps it on the device's row (null: not set) and shows it in the fleet.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_on_link_loss_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("stop_on_link_loss_s")
