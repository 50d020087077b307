"""scheduling and workflows: task policies, schedule slots, run links, scheduler lease

Revision ID: 0003
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tme.controller.store.models

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_utc = tme.controller.store.models.UTCDateTime
_bigint = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "scheduler_lease",
        sa.Column("name", _str(length=32), nullable=False),
        sa.Column("holder", _str(length=200), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "workflow_cursor",
        sa.Column("name", _str(length=32), nullable=False),
        sa.Column("last_event_id", _bigint, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "schedule_slots",
        sa.Column("task_id", _bigint, nullable=False),
        sa.Column("slot_at", _utc(), nullable=False),
        sa.Column("run_id", _str(length=36), nullable=True),
        sa.Column("outcome", _str(length=16), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "slot_at"),
    )
    op.create_table(
        "task_policies",
        sa.Column("task_id", _bigint, nullable=False),
        sa.Column("misfire", sa.JSON(), nullable=True),
        sa.Column("overlap", sa.JSON(), nullable=True),
        sa.Column("trigger", _str(length=64), nullable=True),
        sa.Column("queue_timeout_s", sa.Float(), nullable=True),
        sa.Column("deadline_s", sa.Float(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("schedule_changed_at", _utc(), nullable=False),
        sa.Column("last_slot_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index(
        "ix_task_policies_schedule_changed_at", "task_policies", ["schedule_changed_at"]
    )
    op.create_index("ix_task_policies_trigger", "task_policies", ["trigger"])
    op.create_table(
        "run_links",
        sa.Column("run_id", _str(length=36), nullable=False),
        sa.Column("workflow_id", _str(length=36), nullable=False),
        sa.Column("cause", _str(length=16), nullable=False),
        sa.Column("first_run_id", _str(length=36), nullable=False),
        sa.Column("deadline_at", _utc(), nullable=True),
        sa.Column("retry_at", _utc(), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("not_started", sa.Boolean(), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column("cancel_requested_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_run_links_retry_at", "run_links", ["retry_at"])
    op.create_index("ix_run_links_workflow_id", "run_links", ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_run_links_workflow_id", table_name="run_links")
    op.drop_index("ix_run_links_retry_at", table_name="run_links")
    op.drop_table("run_links")
    op.drop_index("ix_task_policies_trigger", table_name="task_policies")
    op.drop_index("ix_task_policies_schedule_changed_at", table_name="task_policies")
    op.drop_table("task_policies")
    op.drop_table("schedule_slots")
    op.drop_table("workflow_cursor")
    op.drop_table("scheduler_lease")
