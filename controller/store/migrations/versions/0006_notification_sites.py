"""notification sites: the site a rule watches and a delivery is about

Revision ID: 0006
Revises: 0004

A rule bound to a task takes the task's site, so a caller scoped to sites sees
the rules of its tasks. Older deliveries keep no site: only callers granted
every site see them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    for table in ("notification_rules", "notification_deliveries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("site", _str(length=64), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_site"), ["site"], unique=False)
    op.execute(
        "UPDATE notification_rules SET site = "
        "(SELECT tasks.site FROM tasks WHERE tasks.id = notification_rules.task_id) "
        "WHERE task_id IS NOT NULL"
    )


def downgrade() -> None:
    for table in ("notification_deliveries", "notification_rules"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_site"))
            batch_op.drop_column("site")
