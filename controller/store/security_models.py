"""The tables of access control: users, API tokens and the hash-chained audit log.

Passwords and tokens are stored hashed only. A token row keeps its own role and
sites (never more than its user's, checked when it is made) so a script can be
given less than the person who made its token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from tme.controller.store.models import NEVER_REUSE_IDS, BigInt, UTCDateTime, utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=16)
    # Site names the user may act on; ["*"] grants every site.
    sites: list[str] = Field(default_factory=list, sa_type=JSON)
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    # The public half of the token ("tme_<key_id>_<secret>"), used to find the row.
    key_id: str = Field(max_length=32, unique=True)
    secret_hash: str = Field(max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    kind: str = Field(default="api", max_length=16)  # api | session (dashboard login)
    role: str = Field(max_length=16)
    sites: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class AuditEntry(SQLModel, table=True):
    """One change or refusal. `hash` covers every field and the previous row's hash."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    actor: str = Field(default="", max_length=64, index=True)
    action: str = Field(max_length=64, index=True)
    target: str = Field(default="", max_length=200)
    outcome: str = Field(default="ok", max_length=16)
    client: str = Field(default="", max_length=100)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The newest row of the audit log, under its own MAC: one row, updated with each append.

    A log cut short at its end still chains correctly; the head, which names the
    newest row and its MAC, is what shows rows are missing.
    """

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = Field(default=0, sa_type=BigInt)
    last_hash: str = Field(default="", max_length=64)
    mac: str = Field(max_length=64)
