"""Notification rules and the record of every delivery attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from tme.controller.store.models import NEVER_REUSE_IDS, BigInt, UTCDateTime, utcnow

# What a rule can fire on: a run ending badly, an agent going offline, a device stopped,
# or a run that succeeded but was slow (durations.py).
NOTIFY_EVENTS = ("failed", "timed_out", "lost", "agent_offline", "device_stopped", "slow")
# What a rule with no events fires on: all but `slow`, which a rule asks for by name (a
# rule made for failures must not start mailing about durations).
DEFAULT_EVENTS = tuple(e for e in NOTIFY_EVENTS if e != "slow")
CHANNELS = ("email", "webhook")


class NotificationRule(SQLModel, table=True):
    __tablename__ = "notification_rules"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    # None: every task (a global rule); agent_offline ignores it.
    task_id: int | None = Field(default=None, sa_type=BigInt, index=True)
    # The site the rule watches (a task's rule: the task's site); None: every site.
    site: str | None = Field(default=None, max_length=64, index=True)
    events: list[str] = Field(default_factory=list, sa_type=JSON)
    channel: str = Field(max_length=16)
    # Comma-separated addresses for email, the URL for a webhook.
    target: str = Field(max_length=2000)
    # HMAC key of a webhook; kept to sign every payload, never shown by the API.
    secret: str = Field(default="", max_length=200)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class NotificationDelivery(SQLModel, table=True):
    __tablename__ = "notification_deliveries"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    # "<rule key>|<event key>": the same event never notifies one rule twice.
    dedup_key: str = Field(max_length=300, unique=True)
    rule: str = Field(max_length=120)
    channel: str = Field(max_length=16)
    target: str = Field(max_length=2000)
    event: str = Field(max_length=32)
    # The site of the run or agent the event is about: who may read the delivery.
    site: str | None = Field(default=None, max_length=64, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_error: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
