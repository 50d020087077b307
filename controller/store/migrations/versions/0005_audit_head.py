"""audit head: the keyed record of the audit log's newest row

Revision ID: 0005
Revises: 0002

From this revision on, audit rows are chained with an HMAC under `auth.audit_key`
and each append moves the head. Rows written before it carry plain SHA-256
hashes, which `tme audit verify` reports as chained without the key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_bigint = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", _bigint, nullable=False),
        sa.Column("last_hash", _str(length=64), nullable=False),
        sa.Column("mac", _str(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
