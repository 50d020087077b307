"""task resources: the exclusive resources a task's runs hold while active

Revision ID: 0018
Revises: 0017

A task names up to eight resources (a tank, a cell, a shared bus); at most one active
run among all the tasks naming one runs at a time, the others wait. `tasks.resources`
is what the API shows; `task_resources` has one row per (task, resource), so the tasks
naming a resource are found by its index. Existing tasks name none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "task_resources",
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "resource"),
    )
    op.create_index("ix_task_resources_resource", "task_resources", ["resource"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_task_resources_resource", table_name="task_resources")
    op.drop_table("task_resources")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("resources")
