"""device lockout: a device locked out at its agent, as the agent's presence says

Revision ID: 0012
Revises: 0011

Someone at the machine locks a device out at its agent (`tme agent lock`): the agent
refuses whatever would change it until it is unlocked there. Its presence says so; the
controller keeps who, why and since when on the device's row (null: not locked out),
shows it in the fleet and warns when a task is created for it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lockout", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("lockout")
