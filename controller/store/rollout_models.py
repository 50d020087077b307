"""Tables of rollouts: one device op run on many matching devices, in waves.

`rollouts` holds what was asked (op, params, match, window, abort criteria) and where
it stands; `rollout_devices` one row per device it runs on, in the order it starts
them, with the task made for it and whether its run was started (or skipped: the
rollout aborted or was canceled first). A run's outcome is its task's, read when
needed: what the rollout decides from is in these rows and the runs, so a controller
that restarts reads it back as it was (services/rollouts.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from tme.controller.store.models import NEVER_REUSE_IDS, REASON_MAX, BigInt, UTCDateTime, utcnow


def _when(nullable: bool = True) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Rollout(SQLModel, table=True):
    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_site_id", "site", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInt)
    name: str = Field(max_length=60)
    description: str = Field(default="", max_length=4000)
    site: str = Field(max_length=64)
    op: str = Field(max_length=32)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    match: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    timeout_s: float | None = None
    retries: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    window: int = 1  # runs going at once, as resolved from `window_given`
    window_given: str = Field(default="1", max_length=8)  # as asked: "3", "25%"
    failed_percent: float = 20.0
    min_settled: int = 2
    state: str = Field(default="going", max_length=16, index=True)
    reason: str = Field(default="", max_length=REASON_MAX)
    # Devices the fleet checks refused, left out with skip_refused: agent, device, why.
    refused: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)
    finished_at: datetime | None = _when()


class RolloutDevice(SQLModel, table=True):
    """One device of a rollout. `phase`: not_started, started or skipped."""

    __tablename__ = "rollout_devices"

    rollout_id: int = Field(
        foreign_key="rollouts.id", primary_key=True, sa_type=BigInt, ondelete="CASCADE"
    )
    position: int = Field(primary_key=True)  # the order its run starts in
    agent: str = Field(max_length=64)
    device: str = Field(max_length=64)
    profile: str = Field(default="", max_length=64)
    # Its task; no foreign key: deleting the task leaves the rollout's record of it.
    task_id: int | None = Field(default=None, sa_type=BigInt, index=True)
    phase: str = Field(default="not_started", max_length=16)
    run_id: str | None = Field(default=None, max_length=36)  # its first run, once started
    reason: str = Field(default="", max_length=REASON_MAX)
    warnings: list[str] = Field(default_factory=list, sa_type=JSON)
