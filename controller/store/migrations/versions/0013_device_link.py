"""device link: whether a device answered its agent's last operation, as its presence says

Revision ID: 0013
Revises: 0012

An agent tells in its presence, per device, whether the device answered its last
operation (`ok`) or not (`down`: no connection, no answer in time), since when and the
error that began it. The controller keeps it on the device's row (null: not known yet),
shows it in the fleet and exports it as tme_device_link_up.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("link")
