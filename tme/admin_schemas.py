"""What an admin script reads and sends beside tasks: who a token acts as, the audit
log, and notification rules with the record of their deliveries.

The controller answers with these models and the SDK reads its answers with them
(they live here, not in the controller, so the SDK imports no server code).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tme.errors import ValidationError
from tme.schema_base import Input, Output
from tme.schemas import Name
from tme.settings_models import NotifyEvent
from tme.shown_text import Label

MAX_ID = 2**63 - 1  # the largest id the database holds; a larger one names no row

# --- who a token acts as ---------------------------------------------------------


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PrincipalPublic(Output):
    username: str
    role: str
    sites: list[str]
    token_kind: str = "api"


class SessionPublic(PrincipalPublic):
    token: str = Field(description="A bearer token for this session; the cookie carries it too")
    expires_at: datetime


# --- the audit log ---------------------------------------------------------------

AuditOutcome = Literal["ok", "failed", "refused"]
AuditText = Annotated[str, Field(min_length=1, max_length=64)]


class AuditEntryPublic(BaseModel):
    """An audit row as appended and as the API shows it: the fields its MAC covers."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    client: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    next_before_id: int | None = None


class AuditFilter(BaseModel):
    """The filters of GET /api/v1/audit and /audit.csv, as the SDK checks them before
    any request (the route takes them as query parameters of the same names and
    bounds). `action` is a prefix ("auth." matches every login and logout)."""

    model_config = ConfigDict(extra="forbid")

    actor: AuditText | None = None
    action: AuditText | None = None
    outcome: AuditOutcome | None = None
    since: datetime | None = None
    until: datetime | None = None


def in_utc_if_naive(when: datetime | None) -> datetime | None:
    """A time without a UTC offset is taken as UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def check_time_range(since: datetime | None, until: datetime | None) -> None:
    """Refuse a window with no time in it (rows from `since` up to before `until`): it
    would answer no rows at all, and nothing would say why."""
    start, end = in_utc_if_naive(since), in_utc_if_naive(until)
    if start is not None and end is not None and start >= end:
        message = "since must be before until"
        raise ValidationError(
            f"invalid request: since: {message}",
            field_errors=[{"field": "since", "message": message, "type": "value_error"}],
        )


# --- notifications ---------------------------------------------------------------

DeliveryStatus = Literal["pending", "delivered", "failed"]


def _default_events() -> list[NotifyEvent]:
    return ["failed", "timed_out", "lost"]


class NotificationRuleCreate(Input):
    """A rule as POST /api/v1/notifications/rules takes it. The server checks the
    target further (an http(s) URL with a host it may send to, or addresses)."""

    name: Label = Field(min_length=1, max_length=100)
    task_id: int | None = Field(default=None, gt=0, le=MAX_ID, description="None: every task")
    # A site name as a task's target takes it: a rule naming a site no task can have
    # (a space, a slash) would be stored and never match.
    site: Name | None = Field(default=None, description="None: the task's, or every site")
    events: list[NotifyEvent] = Field(default_factory=_default_events)
    channel: Literal["email", "webhook"]
    target: str = Field(min_length=1, max_length=2000, description="addresses or URL")
    secret: str = Field(default="", max_length=200, description="HMAC key of a webhook")

    @field_validator("site", "secret")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        """PostgreSQL text cannot hold a NUL (SQLite stored it): a 422 naming the field,
        not 'a value cannot be stored' naming nothing."""
        if value is not None and "\x00" in value:
            raise ValueError("may not contain NUL characters")
        return value


class NotificationRulePublic(Output):
    """A rule as the API shows it: `target` redacted for a caller who may not manage
    it, the webhook's secret never (`signed` says whether it has one)."""

    id: int
    name: str
    task_id: int | None = None
    site: str | None = None
    events: list[str]
    channel: str
    target: str
    enabled: bool = True
    created_at: datetime
    signed: bool = False


class NotificationDeliveryPublic(Output):
    """One notification sent, being sent or given up on: its rule (`rule:<id>`, or a
    webhook of the settings file), the event and what it said."""

    id: int
    dedup_key: str = Field(
        default="", description="<rule>|<event key>: one event notifies one rule once"
    )
    rule: str
    channel: str
    target: str
    event: str
    site: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    status: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    created_at: datetime
    delivered_at: datetime | None = None


class DeliveryFilter(Input):
    """What client.notifications.deliveries reads, as the SDK checks it before any
    request: the deliveries of `status` (None: all), no more than the newest `limit`
    (None: every one, page after page)."""

    status: DeliveryStatus | None = None
    limit: int | None = Field(default=None, ge=1, le=1000)
