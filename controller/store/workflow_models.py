"""Tables of scheduling and workflows, beside the core tables of models.py.

A task's scheduling policy and schedule bookkeeping live in `task_policies` (one
row per task); every handled schedule slot is one `schedule_slots` row, unique per
(task, slot), so a slot is fired or recorded as missed exactly once whatever
restarts. `run_links` ties a run to its workflow run and records why it exists.
`scheduler_lease` elects the one controller that schedules; `workflow_cursor`
remembers how far the workflow engine has read the run events. `workflow_cancels`
records the workflow runs an operator canceled as a whole: none of their steps starts
or is retried after it (services/workflow_cancel.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, column
from sqlmodel import Field, SQLModel

from tme.controller.store.models import BigInt, UTCDateTime, utcnow

# The rows of the partial indexes of unsettled links (migration 0008) and of links
# held in an overlap queue (migration 0009).
UNSETTLED = column("settled", Boolean).is_(False)
HELD_IN_QUEUE = column("held", Boolean).is_(True)


def _when(nullable: bool = True, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


class TaskPolicy(SQLModel, table=True):
    __tablename__ = "task_policies"

    task_id: int = Field(
        foreign_key="tasks.id", primary_key=True, sa_type=BigInt, ondelete="CASCADE"
    )
    misfire: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    overlap: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    trigger: str | None = Field(default=None, max_length=64, index=True)
    queue_timeout_s: float | None = None
    deadline_s: float | None = None
    paused: bool = False
    # When the schedule was last set, changed or resumed: slots before it are not owed.
    schedule_changed_at: datetime = _when(nullable=False, index=True)
    last_slot_at: datetime | None = _when()


class ScheduleSlot(SQLModel, table=True):
    """One schedule slot handled: fired (run_id) or missed (a skipped run)."""

    __tablename__ = "schedule_slots"

    task_id: int = Field(
        foreign_key="tasks.id", primary_key=True, sa_type=BigInt, ondelete="CASCADE"
    )
    slot_at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    run_id: str | None = Field(default=None, max_length=36)
    outcome: str = Field(default="fired", max_length=16)


class RunLink(SQLModel, table=True):
    """Where a run belongs: its workflow run, its cause, its retry chain and its deadline."""

    __tablename__ = "run_links"
    # Only the links not settled yet (runs in flight, and final runs the workflow
    # cursor went by), so the settling sweep reads these, not every run ever kept.
    __table_args__ = (
        Index(
            "ix_run_links_unsettled",
            "run_id",
            sqlite_where=UNSETTLED,
            postgresql_where=UNSETTLED,
        ),
        # Only the links held in an overlap queue: a finished run's task is looked up
        # here for a held run to release, at a cost that follows the queues, not runs.
        Index(
            "ix_run_links_held",
            "run_id",
            sqlite_where=HELD_IN_QUEUE,
            postgresql_where=HELD_IN_QUEUE,
        ),
    )

    run_id: str = Field(foreign_key="runs.id", primary_key=True, max_length=36, ondelete="CASCADE")
    workflow_id: str = Field(max_length=36, index=True)
    cause: str = Field(default="manual", max_length=16)
    first_run_id: str = Field(max_length=36)  # the first attempt of a retry chain
    deadline_at: datetime | None = _when()  # total deadline across retries
    retry_at: datetime | None = _when(index=True)  # a planned automatic retry
    held: bool = False  # waiting for an earlier run of its task (overlap policy queue)
    not_started: bool = False  # the agent said the operation never touched the machine
    settled: bool = False  # the workflow engine has acted on its final state
    cancel_requested_at: datetime | None = _when()


class SchedulerLease(SQLModel, table=True):
    __tablename__ = "scheduler_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class WorkflowCursor(SQLModel, table=True):
    __tablename__ = "workflow_cursor"

    name: str = Field(primary_key=True, max_length=32)
    last_event_id: int = Field(default=0, sa_type=BigInt)


class WorkflowCancel(SQLModel, table=True):
    """A workflow run canceled as a whole: who did it and when (one row per workflow run)."""

    __tablename__ = "workflow_cancels"

    workflow_id: str = Field(primary_key=True, max_length=36)
    canceled_by: str = Field(max_length=64)  # a user's name (security_models.User)
    canceled_at: datetime = _when(nullable=False)
