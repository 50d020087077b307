"""The rollout contract: one device op sent to many matching devices, in waves.

A rollout names an op and its params as a task does, and a `match` over the devices
their agents published at one site. It starts `window` runs at once (a number, or a
share of the devices like "25%"), starts the next each time one settles, in device name
order, and stops starting them once too many of its settled runs did not succeed
(`abort`). docs/rollouts.md tells the whole of it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tme.op_params import DEVICE_OPS, Op, validate_task_shape
from tme.schema_base import Input, Output
from tme.schemas import Name, Retries, Target, TaskName
from tme.shown_text import FreeText, Label

# A device name, or a shell-style pattern of them (pump*, meter[12], valve?).
DevicePattern = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-*?\[\]!]+$")
]
# What a rollout's name may be: its tasks are named "<rollout name>: <device>" (with
# " (<agent>)" when two agents have a device of that name), within a task name's 200.
RolloutName = Annotated[TaskName, Field(max_length=60)]
MAX_MATCH_NAMES = 500
MAX_WINDOW = 10_000
PERCENT = re.compile(r"^(\d{1,3})%$")


class RolloutMatch(Input):
    """The devices a rollout runs on, as their agents published them."""

    site: Name
    agent: Name | None = None
    profile: Label | None = Field(default=None, min_length=1, max_length=64)
    devices: list[DevicePattern] | None = Field(default=None, min_length=1, max_length=500)


class RolloutAbort(Input):
    """Stop starting runs once at least `min_settled` runs settled and `failed_percent`
    of them or more did not succeed (failed, timed_out, rejected, expired, lost)."""

    failed_percent: float = Field(default=20.0, gt=0, le=100)
    min_settled: int = Field(default=2, ge=1, le=MAX_WINDOW)


def _window(value: Any) -> int | str:
    """A number of runs (1 to MAX_WINDOW), or a percentage of the devices ("25%")."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WINDOW:
        return value
    if isinstance(value, str):
        found = PERCENT.fullmatch(value.strip())
        if found is not None and 1 <= int(found.group(1)) <= 100:
            return f"{int(found.group(1))}%"
    raise ValueError(
        f"a window is a number of runs from 1 to {MAX_WINDOW} or a percentage of the"
        f" devices from '1%' to '100%' (like '25%'), not {value!r}"
    )


Window = Annotated[int | str, BeforeValidator(_window)]


def window_size(window: int | str, devices: int) -> int:
    """How many runs go at once for `devices` devices: the number, or the share rounded
    up (at least one)."""
    if isinstance(window, int):
        return max(1, min(window, devices))
    share = int(window.rstrip("%"))
    return max(1, math.ceil(devices * share / 100))


class RolloutCreate(Input):
    """POST /api/v1/rollouts (and /rollouts/preview, which stores nothing)."""

    name: RolloutName
    description: FreeText = Field(default="", max_length=4000)
    op: Op
    params: dict[str, Any] = Field(default_factory=dict)
    match: RolloutMatch
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    retries: Retries = Field(default_factory=Retries)
    window: Window = 1
    abort: RolloutAbort = Field(default_factory=RolloutAbort)
    skip_refused: bool = False
    # Each device's task's priority: its runs and commands wait by it, as any task's do.
    priority: int = Field(default=5, ge=0, le=9)

    @field_validator("op")
    @classmethod
    def _device_op(cls, op: str) -> str:
        if op not in DEVICE_OPS:
            ops = ", ".join(sorted(DEVICE_OPS))
            raise ValueError(f"a rollout runs a device op (one of {ops}), not {op!r}")
        return op

    @model_validator(mode="after")
    def _shape(self) -> RolloutCreate:
        # The params as a task of the op has them; any device stands in for each one.
        some = Target(site=self.match.site, agent="agent", device="device")
        self.params = validate_task_shape(self.op, some, self.params, None)
        return self


class MatchedDevice(Output):
    """A device a rollout matched, and what the controller's fleet checks say of the op
    and params against it: refused (why), or warnings (locked out, stopped, not answering)."""

    agent: str
    device: str
    profile: str
    refused: str | None = None
    warnings: list[str] = Field(default_factory=list)


class RolloutPreview(Output):
    """What a rollout would do, storing nothing: the devices it would run on (in the
    order it starts them), those it refuses, and its window."""

    devices: list[MatchedDevice]
    refused: list[MatchedDevice]
    window: int


class RolloutDevicePublic(Output):
    """One device of a rollout: its task, its run (once started) and where it stands.
    `state` is `not_started`, a run's state, or `skipped` (aborted, canceled)."""

    agent: str
    device: str
    profile: str
    task_id: int | None
    run_id: str | None
    state: str
    reason: str
    warnings: list[str] = Field(default_factory=list)


class RolloutPublic(Output):
    """A rollout as GET /api/v1/rollouts/{id} shows it (the list leaves `devices` empty)."""

    id: int
    name: str
    description: str
    site: str
    op: str
    params: dict[str, Any]
    match: dict[str, Any]
    timeout_s: float | None
    window: int
    window_given: str
    abort: RolloutAbort
    state: str  # going, succeeded, done, aborted, canceled
    reason: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    refused: list[MatchedDevice] = Field(default_factory=list)
    devices: list[RolloutDevicePublic] = Field(default_factory=list)
