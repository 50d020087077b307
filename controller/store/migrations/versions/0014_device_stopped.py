"""device stopped: a stop's latch, as the device's agent says it in its presence

Revision ID: 0014
Revises: 0013

A device stopped from the controller (POST /api/v1/devices/{device}/stop) is latched at
its agent: its changes are refused until it is resumed. The agent tells it in its
presence (by, reason, at); the controller keeps it on the device's row (null: not
stopped), shows it in the fleet and warns a task that would change the device.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stopped", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("stopped")
