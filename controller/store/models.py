"""The controller's tables (SQLModel).

Tasks say what to do; runs are executions of a task; run events record every
state transition with its time and reason. Fleet tables (sites, agents, devices)
are filled from presence. The outbox holds commands to publish, written in the
same transaction as the run moving to queued.

Every timestamp is stored as UTC and read back timezone-aware.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    TypeDecorator,
    UniqueConstraint,
    column,
    desc,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from tme.protocol import DEFAULT_PRIORITY

REASON_MAX = 2000  # characters of a run's (and a hop's) reason; longer ones are cut


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC, return aware UTC (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# 64-bit ids on PostgreSQL; SQLite only autoincrements a column declared INTEGER.
BigInt = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest id a BigInt holds; a larger one names no row
# A table whose numeric ids must never be given twice: on SQLite, AUTOINCREMENT (without
# it a new row takes the largest id plus one, so the newest row's id came back after its
# delete); PostgreSQL's sequences never go back. Ids are how clients name tasks and how
# the change feed and the notifier know what they have read (migration 0010).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def _ts(nullable: bool = False, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_id", "status", "id"),
        Index("ix_tasks_site_id", "site", "id"),
        Index("ix_tasks_agent_id", "agent", "id"),
        Index("ix_tasks_op_id", "op", "id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    op: str = Field(max_length=32)
    site: str | None = Field(default=None, max_length=64)
    agent: str | None = Field(default=None, max_length=64)
    device: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    cmd: str | None = Field(default=None, max_length=4000)
    schedule: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    depends_on: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    timeout_s: float | None = None
    retries: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    priority: int = DEFAULT_PRIORITY
    assigned_to: str | None = Field(default=None, max_length=200)
    # Exclusive resources its runs hold while active; rows of task_resources say the same.
    resources: list[str] = Field(
        default_factory=list, sa_type=JSON, sa_column_kwargs={"server_default": "[]"}
    )
    # Denormalised from the latest run so list filters use an index.
    status: str = Field(default="idle", max_length=16)
    latest_run_id: str | None = Field(default=None, max_length=36)
    # Its definition's revision, one more with each change through the API: its ETag, and
    # what If-Match names so that two clients' changes never overwrite each other unseen.
    revision: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class TaskDependency(SQLModel, table=True):
    """An edge: `task_id` runs after `predecessor_id` settles with outcome `on`."""

    __tablename__ = "task_dependencies"

    task_id: int = Field(
        foreign_key="tasks.id", primary_key=True, sa_type=BigInt, ondelete="CASCADE"
    )
    predecessor_id: int = Field(
        foreign_key="tasks.id", primary_key=True, sa_type=BigInt, index=True
    )
    on: str = Field(default="success", max_length=8)


class TaskResource(SQLModel, table=True):
    """A resource a task names (`Task.resources`), one row each: which tasks name it."""

    __tablename__ = "task_resources"

    task_id: int = Field(
        foreign_key="tasks.id", primary_key=True, sa_type=BigInt, ondelete="CASCADE"
    )
    resource: str = Field(primary_key=True, max_length=64, index=True)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_task_created", "task_id", "created_at", "id"),)

    # The run id is also the command id the agent dedups by.
    id: str = Field(default_factory=new_uuid, primary_key=True, max_length=36)
    task_id: int = Field(foreign_key="tasks.id", sa_type=BigInt, ondelete="CASCADE")
    state: str = Field(default="pending", max_length=16, index=True)
    attempt: int = 1
    reason: str = Field(default="", max_length=REASON_MAX)
    result: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    not_after: datetime | None = _ts(nullable=True)
    # Indexed (migration 0009) for the reports and the dashboard, which read runs by
    # when they were created or finished across every task.
    created_at: datetime = _ts(index=True)
    updated_at: datetime = _ts()
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True, index=True)


class RunEvent(SQLModel, table=True):
    """One state transition of a run (or a late result beside a final state)."""

    __tablename__ = "run_events"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    run_id: str = Field(foreign_key="runs.id", max_length=36, index=True, ondelete="CASCADE")
    at: datetime = _ts()
    from_state: str | None = Field(default=None, max_length=16)
    to_state: str = Field(max_length=16)
    reason: str = Field(default="", max_length=REASON_MAX)
    source: str = Field(default="", max_length=32)
    # Id of the wire event that caused it, so a redelivered event is applied once.
    event_id: str | None = Field(default=None, max_length=36, unique=True)


class RunLog(SQLModel, table=True):
    __tablename__ = "run_logs"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    run_id: str = Field(foreign_key="runs.id", max_length=36, index=True, ondelete="CASCADE")
    at: datetime = _ts()
    line: str
    # The agent event that carried the line: a redelivered event appends nothing.
    event_id: str | None = Field(default=None, max_length=36, index=True)


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    task_id: int = Field(sa_type=BigInt)
    created_at: datetime = _ts()


# The rows of the outbox's partial index of what is still to be published (0019).
UNPUBLISHED_ROWS = column("published_at", DateTime).is_(None)


class Outbox(SQLModel, table=True):
    """A command waiting to be published to RabbitMQ with a confirm."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The unpublished rows in the order the dispatcher publishes them (higher
        # priority first, then as written): under a backlog it reads one batch of them,
        # where sorting every unpublished row took each pass longer the longer the backlog.
        Index(
            "ix_outbox_unpublished",
            desc(column("priority")),
            "id",
            sqlite_where=UNPUBLISHED_ROWS,
            postgresql_where=UNPUBLISHED_ROWS,
        ),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    run_id: str = Field(max_length=36, index=True)
    site: str = Field(max_length=64)
    body: str
    created_at: datetime = _ts()
    published_at: datetime | None = _ts(nullable=True, index=True)
    attempts: int = 0
    # Its command's priority: under a backlog the dispatcher publishes higher ones first.
    priority: int = Field(default=5, sa_column_kwargs={"server_default": "5"})
    last_error: str = Field(default="", max_length=2000)


class Site(SQLModel, table=True):
    __tablename__ = "sites"

    name: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _ts()
    last_seen: datetime | None = _ts(nullable=True)


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("site", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    site: str = Field(max_length=64, index=True)
    name: str = Field(max_length=64)
    role: str = Field(default="agent", max_length=16)
    online: bool = False
    last_seen: datetime | None = _ts(nullable=True)
    state_changed_at: datetime | None = _ts(nullable=True)
    # A gateway's last heartbeat (tme.protocol.GatewayStatus) and `received_at`, when
    # the controller applied it; None for agents and gateways that send none.
    status: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Device(SQLModel, table=True):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("site", "agent", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    site: str = Field(max_length=64, index=True)
    agent: str = Field(max_length=64)
    name: str = Field(max_length=64)
    driver: str = Field(default="", max_length=32)
    profile: str = Field(default="", max_length=200)
    points: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # Locked out at its agent (`tme agent lock`): by, reason, at; None when it is not.
    lockout: dict[str, str] | None = Field(default=None, sa_type=JSON)
    # Stopped from the controller, latched at its agent until resumed: by, reason, at.
    stopped: dict[str, str] | None = Field(default=None, sa_type=JSON)
    # Whether it answered its agent's last operation: state (ok, down), since, error;
    # None until an operation found out.
    link: dict[str, str] | None = Field(default=None, sa_type=JSON)
    # Its agent stops it on its own after this long without the link to the controller
    # (the agent's config); None when it does not.
    stop_on_link_loss_s: float | None = None
    updated_at: datetime = _ts()


# Access-control, notification, scheduling and workflow tables live in their own
# modules; importing them here registers them with the metadata everywhere the
# models are loaded (migrations, tests).
from tme.controller.notifications import models as notification_models  # noqa: E402, F401, I001
from tme.controller.store import security_models  # noqa: E402, F401
from tme.controller.store import workflow_models  # noqa: E402, F401
from tme.controller.store import rollout_models  # noqa: E402, F401
