"""workflow cancels: the workflow runs an operator canceled as a whole

Revision ID: 0017
Revises: 0016

A cancel of a whole workflow run (POST /api/v1/workflows/{id}/cancel) cancels its
runs still going and keeps one row here, so none of its steps starts or is retried
afterwards, whatever its runs still going end as.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tme.controller.store.models

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_utc = tme.controller.store.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "workflow_cancels",
        sa.Column("workflow_id", _str(length=36), nullable=False),
        sa.Column("canceled_by", _str(length=64), nullable=False),
        sa.Column("canceled_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id"),
    )


def downgrade() -> None:
    op.drop_table("workflow_cancels")
