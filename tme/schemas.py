"""The task contract shared by the REST API, the SDK, the CLI and the docs.

Field names follow ../DESIGN ("A task, as the API takes it"): extend them, never
rename them. Every input model refuses unknown fields and bounds its sizes, so a
bad request is answered with a 422 that names the field and nothing is written.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

from tme.op_params import CHECK_OP as CHECK_OP
from tme.op_params import DEVICE_OPS as DEVICE_OPS
from tme.op_params import MACHINE_OPS as MACHINE_OPS
from tme.op_params import MAX_PARAMS_BYTES as MAX_PARAMS_BYTES
from tme.op_params import MAX_PARAMS_DEPTH as MAX_PARAMS_DEPTH
from tme.op_params import OPS as OPS
from tme.op_params import CheckableOp as CheckableOp
from tme.op_params import Op as Op
from tme.op_params import check_params_size, located, validate_task_shape
from tme.protocol import DEFAULT_PRIORITY, MAX_PRIORITY
from tme.protocol import MAX_LOG_BYTES as MAX_LOG_BYTES
from tme.schema_base import Input as Input
from tme.schema_base import Output as Output
from tme.schema_base import name_check, pattern_schema
from tme.shown_text import FreeText, one_line
from tme.states import STATUS_WORDS, RunState, is_late
from tme.topics import NAME_PATTERN, not_a_name

# Names travel in MQTT topics and AMQP routing keys: no wildcards, separators or spaces.
# The check of a site, agent or device name: raises ValueError saying what one may hold.
check_name = name_check(NAME_PATTERN, not_a_name)
Name = Annotated[str, AfterValidator(check_name), WithJsonSchema(pattern_schema(NAME_PATTERN))]
MAX_DEPENDENCIES = 50
MAX_BATCH_TASKS = 500  # tasks per POST /api/v1/tasks/batch


class Target(Input):
    site: Name
    agent: Name | None = None
    device: Name | None = None


class Schedule(Input):
    """When a task fires: exactly one of `cron`, `every_s` or `at`."""

    cron: str | None = Field(default=None, max_length=120)
    # At least a second: the scheduler fires a slot at a time, about once a second.
    every_s: float | None = Field(default=None, ge=1, le=366 * 86400)
    at: datetime | None = None
    timezone: str = Field(default="UTC", max_length=64)

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        kinds = [k for k in ("cron", "every_s", "at") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of cron, every_s or at")
        # Each check names its own field (schedule.cron, not schedule): the zone first,
        # as a cron and a wall-clock `at` are read in it.
        located("timezone", self.timezone, lambda: _check_timezone(self.timezone))
        if self.cron is not None:
            cron = self.cron
            located("cron", cron, lambda: _check_cron(cron, self.timezone))
        if self.at is not None and self.at.tzinfo is None:
            from zoneinfo import ZoneInfo

            # A wall-clock time means that time in the schedule's zone.
            self.at = self.at.replace(tzinfo=ZoneInfo(self.timezone))
        if self.at is not None:
            at = self.at
            located("at", at, lambda: _check_at(at))
        return self


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name == "localtime":  # a file of the host's, not a zone: it moves with the host
        raise ValueError(
            "time zone 'localtime' is the controller host's, whatever that is:"
            " name the zone (e.g. 'Europe/Berlin')"
        )
    if name == "Factory" or name.startswith("right/"):
        # right/ zones count leap seconds, so their wall clock is 27 s off everyone's
        raise ValueError(f"time zone {name!r} is not a wall clock: name a zone such as 'UTC'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _check_cron(expr: str, timezone: str) -> None:
    from datetime import UTC

    from tme.crontab import crontab_trigger

    try:
        trigger = crontab_trigger(expr, timezone)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from exc
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(f"cron expression {expr!r} never fires (a day no month has?)")


LAST_AT = datetime(9000, 1, 1, tzinfo=None)  # one-off times end here: dates stay dates


def _check_at(at: datetime) -> None:
    from datetime import UTC

    try:
        utc = at.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("at is out of the range of dates") from exc
    if utc.replace(tzinfo=None) >= LAST_AT:
        raise ValueError(f"at must be before {LAST_AT.year}")


class Dependency(Input):
    task: int = Field(gt=0, le=2**63 - 1)
    on: Literal["success", "failure", "any"] = "success"


class Retries(Input):
    max: int = Field(default=0, ge=0, le=20)
    backoff_s: float = Field(default=1.0, ge=0, le=3600)
    # The wait before retry n is backoff_s * factor**(n-1) spread by +-jitter (a fraction)
    # so many failed runs do not retry in step, and never more than backoff_max_s.
    factor: float = Field(default=2.0, ge=1, le=10)
    backoff_max_s: float = Field(default=300.0, ge=0, le=86400)
    jitter: float = Field(default=0.1, ge=0, le=1)
    # The task's write may be done twice without harm (an absolute setpoint, a valve
    # position): one whose outcome is unknown (no answer in time, the link lost
    # mid-request) is retried too. False: a write is retried only when its agent says
    # it never started (nothing reached the device).
    repeatable: bool = False


class Misfire(Input):
    """What a schedule does with a slot it could not fire on time (controller down, busy)."""

    grace_s: float = Field(default=60.0, ge=0, le=7 * 86400)
    # Beyond the grace: skip (machine tasks' default: a pump must not start hours late)
    # or run once for all the slots missed. Every missed slot is recorded as a skipped run.
    policy: Literal["skip", "run_once"] = "skip"


class Overlap(Input):
    """What a new run does while earlier runs of the task are still active."""

    policy: Literal["skip", "queue", "allow"] = "skip"
    max: int = Field(default=1, ge=1, le=100)  # active runs allowed at once (policy allow)
    # Runs waiting in the overlap queue at most (policy queue): a start beyond it is
    # recorded skipped, so a schedule faster than its runs cannot pile them up for ever.
    max_queued: int = Field(default=10, ge=1, le=1000)


TRIGGER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def _trigger_problem(name: str) -> str:
    return (
        f"{name!r} is no trigger name: 1 to 64 letters, digits, _ . or -,"
        " starting with a letter or digit"
    )


check_trigger_name = name_check(TRIGGER_PATTERN, _trigger_problem)
TriggerName = Annotated[
    str, AfterValidator(check_trigger_name), WithJsonSchema(pattern_schema(TRIGGER_PATTERN))
]


# An exclusive resource a task's runs hold while active (a tank, a cell, a shared bus):
# at most one active run among all the tasks naming it (docs/schedules.md).
RESOURCE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def _resource_name(name: str) -> str:
    if not RESOURCE_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is no resource name: 1 to 64 letters, digits, _ . : or -"
            " (case counts: Tank1 and tank1 are two resources)"
        )
    return name


ResourceName = Annotated[str, AfterValidator(_resource_name)]
MAX_RESOURCES = 8


def _distinct(names: list[str] | None) -> list[str] | None:
    if names is not None:
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"a resource is named once: {', '.join(twice)} more than once")
    return names


Resources = Annotated[
    list[ResourceName], Field(max_length=MAX_RESOURCES), AfterValidator(_distinct)
]


# A task's name: one line, as it shows in lists, emails and terminals.
TaskName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)]
# Who a task is for: shown beside its name in lists, as one line the same way.
Assignee = Annotated[str, Field(max_length=200), AfterValidator(one_line)]


class TaskCreate(Input):
    name: TaskName
    description: FreeText = Field(default="", max_length=4000)
    op: Op = "external"
    target: Target | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    cmd: FreeText | None = Field(default=None, max_length=4000)
    schedule: Schedule | None = None
    depends_on: list[Dependency] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    retries: Retries = Field(default_factory=Retries)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=MAX_PRIORITY)
    assigned_to: Assignee | None = None
    resources: Resources = Field(default_factory=list)
    # scheduling and workflows (None: the default for the task's op)
    misfire: Misfire | None = None
    overlap: Overlap | None = None
    trigger: TriggerName | None = None
    queue_timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    deadline_s: float | None = Field(default=None, gt=0, le=30 * 86400)

    @model_validator(mode="after")
    def _shape(self) -> TaskCreate:
        self.params = validate_task_shape(self.op, self.target, self.params, self.cmd)
        return self


class TaskBatchCreate(Input):
    """POST /api/v1/tasks/batch: tasks created together, all or none."""

    tasks: list[TaskCreate] = Field(min_length=1, max_length=MAX_BATCH_TASKS)


StatusWord = Literal["started", "complete", "fail"]


class TaskUpdate(Input):
    """PATCH (and the seed's PUT): change fields and/or report an external task's status."""

    name: TaskName | None = None
    description: FreeText | None = Field(default=None, max_length=4000)
    target: Target | None = None
    params: dict[str, Any] | None = None
    cmd: FreeText | None = Field(default=None, max_length=4000)
    schedule: Schedule | None = None
    depends_on: list[Dependency] | None = Field(default=None, max_length=MAX_DEPENDENCIES)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    retries: Retries | None = None
    priority: int | None = Field(default=None, ge=0, le=MAX_PRIORITY)
    assigned_to: Assignee | None = None
    resources: Resources | None = None
    misfire: Misfire | None = None
    overlap: Overlap | None = None
    trigger: TriggerName | None = None
    queue_timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    deadline_s: float | None = Field(default=None, gt=0, le=30 * 86400)
    # status report (external tasks): started -> running, complete -> succeeded, fail -> failed
    status: StatusWord | None = None
    log: str | None = Field(default=None, max_length=MAX_LOG_BYTES)
    details: dict[str, Any] | None = None

    @field_validator("details")
    @classmethod
    def _bounded_details(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_params_size(value)
        return value

    @property
    def field_changes(self) -> dict[str, Any]:
        report = {"status", "log", "details"}
        return {k: getattr(self, k) for k in self.model_fields_set - report}

    @model_validator(mode="after")
    def _something(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise ValueError("the update is empty: give at least one field")
        if (self.log is not None or self.details is not None) and self.status is None:
            raise ValueError("log and details are reported with a status")
        return self

    @property
    def run_state(self) -> RunState | None:
        return STATUS_WORDS[self.status] if self.status else None


# --- what the API answers -------------------------------------------------------


class StoredSchedule(Output):
    """A schedule as stored and shown. `Schedule`'s checks apply when one is set, not
    when it is read back: one a later check refuses (a cron the scheduler once took,
    such as "0 6 * * mon#1") must not make its task, and every list holding it,
    unreadable; the scheduler logs that it cannot fire it, and an edit mends it."""

    cron: str | None = None
    every_s: float | None = None
    at: datetime | None = None
    timezone: str = "UTC"


class TaskPublic(Output):
    id: int
    name: str
    description: str = ""
    op: str
    target: Target | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    cmd: str | None = None
    schedule: StoredSchedule | None = None
    depends_on: list[Dependency] = Field(default_factory=list)
    timeout_s: float | None = None
    retries: Retries = Field(default_factory=Retries)
    priority: int = DEFAULT_PRIORITY
    assigned_to: str | None = None
    resources: list[str] = Field(default_factory=list)
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    latest_run_id: str | None = None
    # Its definition's revision: GET answers it as the ETag, and a PATCH sent with
    # If-Match naming another revision is refused with 412 (docs/api.md).
    revision: int = 1
    misfire: Misfire | None = None
    overlap: Overlap | None = None
    trigger: str | None = None
    queue_timeout_s: float | None = None
    deadline_s: float | None = None
    paused: bool = False
    next_fire_times: list[datetime] = Field(default_factory=list)
    # The latest run is final and TME has acted on its outcome: planned its automatic
    # retry (or found none due) and decided its dependents. Until then a final status may
    # still give way to a planned retry, which becomes the latest run (docs/api.md).
    settled: bool = False
    # What the controller noticed about this create or change but did not refuse, such
    # as an agent never seen at its site (tme.controller.services.fleet_checks). Only in
    # the answer to the request that caused it: never stored, [] when read later.
    warnings: list[str] = Field(default_factory=list)


class RunEventPublic(Output):
    at: datetime
    from_state: str | None
    to_state: str
    reason: str = ""
    source: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def late(self) -> bool:
        """A hop that arrived after the run had moved past it (a broker's confirm after
        the agent's result): recorded, but it changed no state, a final one least of all."""
        return is_late(self.from_state, self.to_state)


class RunLogLine(Output):
    at: datetime
    line: str


class RunPublic(Output):
    id: str
    task_id: int
    state: str
    attempt: int = 1
    reason: str = ""
    result: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Final, and TME has acted on its outcome: planned its automatic retry (or found
    # none due) and decided the dependents in its workflow run (docs/api.md).
    settled: bool = False
    # The workflow run it belongs to (its first run's id) and why it exists: created,
    # schedule, trigger, manual, dependency or retry. None only for a run without a link.
    workflow_id: str | None = None
    cause: str | None = None


class RunDetail(RunPublic):
    events: list[RunEventPublic] = Field(default_factory=list)
    log: list[RunLogLine] = Field(default_factory=list)
    # Seconds from its start on the machine to its end (None: it did not start or end),
    # against its task's usual: the median of the task's last succeeded runs before it
    # (`usual_runs` of them; None: none yet). `slow`: it succeeded but took far longer
    # than usual, by `notifications.slow` (docs/dashboard.md, Slow runs).
    took_s: float | None = None
    usual_s: float | None = None
    usual_runs: int = 0
    slow: bool = False


T = TypeVar("T")


class TaskBatchPublic(Output):
    tasks: list[TaskPublic]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class TriggerFired(Output):
    """The answer to firing a named trigger: the runs it started, one per bound task."""

    trigger: str
    runs: list[RunPublic] = Field(default_factory=list)


class WorkflowCanceled(Output):
    """The answer to canceling a workflow run as a whole: who canceled it, when, and the
    runs this cancel canceled or asked their agents to stop, as they are after it."""

    workflow_id: str
    canceled_by: str
    canceled_at: datetime
    runs: list[RunPublic] = Field(default_factory=list)


class ResourceRun(Output):
    """A run holding an exclusive resource, or waiting for it."""

    run_id: str
    task_id: int
    task_name: str
    state: str
    created_at: datetime
    priority: int = (
        DEFAULT_PRIORITY  # its task's: the runs waiting go higher priority first, then oldest
    )


class ResourcePublic(Output):
    """An exclusive resource (GET /api/v1/resources): the tasks naming it, the run that
    holds it now (None: free) and the runs waiting for it, next first (their tasks'
    higher priority first, then oldest). Only the tasks and runs of the caller's sites
    are shown; `held_elsewhere` says a run of another site holds it."""

    name: str
    tasks: list[int] = Field(default_factory=list)
    holder: ResourceRun | None = None
    held_elsewhere: bool = False
    waiting: list[ResourceRun] = Field(default_factory=list)
