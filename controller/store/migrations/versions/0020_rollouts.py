"""rollouts: one device op run on many matching devices, in waves

Revision ID: 0020
Revises: 0019

A rollout (POST /api/v1/rollouts) keeps what was asked and where it stands in
`rollouts`, and one row per device it runs on in `rollout_devices`, with the task made
for that device and whether its run was started. Nothing existing changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tme.controller.store.models

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_utc = tme.controller.store.models.UTCDateTime
_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", _id, nullable=False),
        sa.Column("name", _str(length=60), nullable=False),
        sa.Column("description", _str(length=4000), nullable=False),
        sa.Column("site", _str(length=64), nullable=False),
        sa.Column("op", _str(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("match", sa.JSON(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("retries", sa.JSON(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("window_given", _str(length=8), nullable=False),
        sa.Column("failed_percent", sa.Float(), nullable=False),
        sa.Column("min_settled", sa.Integer(), nullable=False),
        sa.Column("state", _str(length=16), nullable=False),
        sa.Column("reason", _str(length=2000), nullable=False),
        sa.Column("refused", sa.JSON(), nullable=False),
        sa.Column("created_by", _str(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_rollouts_site_id", "rollouts", ["site", "id"], unique=False)
    op.create_index("ix_rollouts_state", "rollouts", ["state"], unique=False)
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", _id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("agent", _str(length=64), nullable=False),
        sa.Column("device", _str(length=64), nullable=False),
        sa.Column("profile", _str(length=64), nullable=False),
        sa.Column("task_id", _id, nullable=True),
        sa.Column("phase", _str(length=16), nullable=False),
        sa.Column("run_id", _str(length=36), nullable=True),
        sa.Column("reason", _str(length=2000), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "position"),
    )
    op.create_index("ix_rollout_devices_task_id", "rollout_devices", ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rollout_devices_task_id", table_name="rollout_devices")
    op.drop_table("rollout_devices")
    op.drop_index("ix_rollouts_state", table_name="rollouts")
    op.drop_index("ix_rollouts_site_id", table_name="rollouts")
    op.drop_table("rollouts")
