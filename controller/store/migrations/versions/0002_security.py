"""security: users, API tokens, audit log

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tme.controller.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_utc = tme.controller.store.models.UTCDateTime
_bigint = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", _str(length=64), nullable=False),
        sa.Column("password_hash", _str(length=200), nullable=False),
        sa.Column("role", _str(length=16), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_login_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", _str(length=32), nullable=False),
        sa.Column("secret_hash", _str(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", _str(length=100), nullable=False),
        sa.Column("kind", _str(length=16), nullable=False),
        sa.Column("role", _str(length=16), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("last_used_at", _utc(), nullable=True),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", _bigint, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", _str(length=64), nullable=False),
        sa.Column("action", _str(length=64), nullable=False),
        sa.Column("target", _str(length=200), nullable=False),
        sa.Column("outcome", _str(length=16), nullable=False),
        sa.Column("client", _str(length=100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", _str(length=64), nullable=False),
        sa.Column("hash", _str(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"], unique=False)
    op.create_index("ix_audit_log_action", "audit_log", ["action"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("users")
