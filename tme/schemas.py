"""The task contract shared by the REST API, the SDK, the CLI and the docs.

Field names follow ../DESIGN ("A task, as the API takes it"): extend them, never
rename them. Every input model refuses unknown fields and bounds its sizes, so a
bad request is answered with a 422 that names the field and nothing is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    computed_field,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tme.protocol import MAX_LOG_BYTES as MAX_LOG_BYTES
from tme.protocol import deeper_than
from tme.schema_base import Input as Input
from tme.schema_base import Output as Output
from tme.states import STATUS_WORDS, RunState, is_late
from tme.topics import NAME_PATTERN

Op = Literal[
    "external",
    "noop",
    "sleep",
    "shell",
    "modbus.read",
    "modbus.write",
    "serial.command",
    "device.stop",
    "device.resume",
    "device.check",
]
OPS: tuple[str, ...] = get_args(Op)
MACHINE_OPS = frozenset(OPS) - {"external"}
# Ops that act on a device through a driver, so the target must name the device.
DEVICE_OPS = MACHINE_OPS - {"noop", "sleep", "shell"}
# What a device.check (a dry run) may check: its agent answers what the op would do now.
CHECK_OP = "device.check"
CheckableOp = Literal["modbus.read", "modbus.write", "serial.command", "device.stop"]

# Names travel in MQTT topics and AMQP routing keys: no wildcards, separators or spaces.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
PointName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32  # nesting of params and details, as the protocol's results
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
        _located("timezone", self.timezone, lambda: _check_timezone(self.timezone))
        if self.cron is not None:
            cron = self.cron
            _located("cron", cron, lambda: _check_cron(cron, self.timezone))
        if self.at is not None and self.at.tzinfo is None:
            from zoneinfo import ZoneInfo

            # A wall-clock time means that time in the schedule's zone.
            self.at = self.at.replace(tzinfo=ZoneInfo(self.timezone))
        if self.at is not None:
            at = self.at
            _located("at", at, lambda: _check_at(at))
        return self


def _located(field: str, value: Any, check: Callable[[], None]) -> None:
    """Run a check of one field from a model validator, its ValueError located there."""
    try:
        check()
    except ValueError as exc:
        raise _refusal((field,), str(exc), value) from None


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


TriggerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


# --- op parameters --------------------------------------------------------------


class NoParams(Input):
    pass


class SleepParams(Input):
    seconds: float = Field(ge=0, le=86400)


class ModbusReadParams(Input):
    point: PointName | None = None
    points: list[PointName] | None = Field(default=None, min_length=1, max_length=125)

    @model_validator(mode="after")
    def _one(self) -> ModbusReadParams:
        if (self.point is None) == (self.points is None):
            raise ValueError("give exactly one of point or points")
        return self


def _one_message(message: str) -> WrapValidator:
    """A union's refusal in one message: pydantic gives one per member of the union
    ("value.float: ...; value.int: ...; value.bool: ..."), which reads as three problems."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("value_type", message) from None

    return WrapValidator(check)


NumberOrBool = Annotated[float | int | bool, _one_message("Input should be a number or true/false")]
# bool first: in a union, pydantic would take true as the int 1 (a bool argument of the
# profile then refuses it); each JSON value keeps its own type
SerialArg = Annotated[
    bool | int | float | str, _one_message("Input should be a number, text or true/false")
]


class ModbusWriteParams(Input):
    point: PointName
    value: NumberOrBool
    verify: bool = False


class SerialCommandParams(Input):
    command: PointName
    args: list[SerialArg] = Field(default_factory=list, max_length=16)


class DeviceStopParams(Input):
    reason: str = Field(default="", max_length=200)
    by: str = Field(default="", max_length=200)  # who asked (the stop's latch shows it)


class CheckParams(Input):
    """device.check: the device op checked, and its params (checked as that op's)."""

    op: CheckableOp
    params: dict[str, Any] = Field(default_factory=dict)


PARAMS_MODELS: dict[str, type[Input] | None] = {
    "external": None,  # free-form, bounded in size
    "noop": NoParams,
    "sleep": SleepParams,
    "shell": NoParams,
    "modbus.read": ModbusReadParams,
    "modbus.write": ModbusWriteParams,
    "serial.command": SerialCommandParams,
    "device.stop": DeviceStopParams,
    "device.resume": DeviceStopParams,
    "device.check": CheckParams,
}


# Each op's params as the `params` field of a model of their own: validating through it,
# pydantic locates every problem at `params.<field>` (`tasks.1.params.value` in a batch).
_PARAMS_FIELDS: dict[str, type[BaseModel]] = {
    op: create_model(f"ParamsOf_{op.replace('.', '_')}", params=(model, ...))
    for op, model in PARAMS_MODELS.items()
    if model is not None
}


def _check_params_size(params: dict[str, Any]) -> None:
    """A free-form mapping the store and every answer can hold: finite numbers, valid
    Unicode, at most MAX_PARAMS_DEPTH levels and MAX_PARAMS_BYTES of UTF-8 JSON.
    The messages do not name the field: the error's location does (params, details)."""
    if deeper_than(params, MAX_PARAMS_DEPTH):
        raise ValueError(f"nested deeper than {MAX_PARAMS_DEPTH} levels")
    try:
        encoded = json.dumps(params, default=str, allow_nan=False, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (a lone surrogate)") from exc
    except ValueError as exc:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from exc
    if len(encoded) > MAX_PARAMS_BYTES:
        raise ValueError(f"larger than {MAX_PARAMS_BYTES} bytes as JSON")


def validate_task_shape(
    op: str, target: Target | None, params: dict[str, Any], cmd: str | None
) -> dict[str, Any]:
    """Check what an op needs (target, params, cmd); return the normalised params.

    Raises pydantic's ValidationError locating each problem at the field it is in
    (`params.value`, `params`, `target`, `cmd`); raised in a model validator, pydantic
    puts that location under the model's own (`tasks.1.params.value`)."""
    _located("params", params, lambda: _check_params_size(params))
    if op in MACHINE_OPS and (target is None or target.agent is None):
        raise _refusal(("target",), f"op {op!r} needs a target with site and agent", target)
    if op in DEVICE_OPS and (target is None or target.device is None):
        raise _refusal(("target",), f"op {op!r} needs a target device", target)
    if op == "shell" and not cmd:
        raise _refusal(("cmd",), "op 'shell' needs cmd", cmd)
    if op != "shell" and cmd:
        raise _refusal(("cmd",), "cmd is only for op 'shell'", cmd)
    wrapper = _PARAMS_FIELDS.get(op)
    if wrapper is None:
        return params
    checked: BaseModel = wrapper.model_validate({"params": params}).params  # type: ignore[attr-defined]
    normal = checked.model_dump(exclude_none=True)
    if op == CHECK_OP:  # the op checked, with its params as a task of it would have them
        normal["params"] = _checked_params(normal["op"], target, normal.get("params", {}))
    return normal


def _checked_params(op: str, target: Target | None, params: dict[str, Any]) -> dict[str, Any]:
    """A device.check's params.params, validated as `op`'s, located under params.params."""
    try:
        return validate_task_shape(op, target, params, None)
    except ValidationError as exc:
        first = exc.errors()[0]
        inner = tuple(str(part) for part in first["loc"])
        loc = ("params", "params", *inner[1:]) if inner[:1] == ("params",) else ("params",)
        raise _refusal(loc, first["msg"], first.get("input")) from None


def _refusal(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    detail: InitErrorDetails = {
        "type": PydanticCustomError("value_error", "{reason}", {"reason": message}),
        "loc": loc,
        "input": value,
    }
    return ValidationError.from_exception_data("task", [detail])


# Characters a one-line label may not hold: controls (a newline in an email subject,
# ESC clearing an operator's terminal) and the bidirectional overrides that make a name
# read as another.
_NOT_IN_A_LABEL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


_CONTROL_NAMES = {0x00: "NUL", 0x09: "tab", 0x0A: "line feed", 0x0D: "carriage return", 0x1B: "ESC"}


def _one_line(value: str) -> str:
    found = _NOT_IN_A_LABEL.search(value)
    if found is not None:
        code = ord(found.group())
        called = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
        raise ValueError(
            f"a name is one line of text: it may not hold the control character"
            f" U+{code:04X}{called} (at {found.start()})"
        )
    return value


# A task's name: one line, as it shows in lists, emails and terminals.
TaskName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]


class TaskCreate(Input):
    name: TaskName
    description: str = Field(default="", max_length=4000)
    op: Op = "external"
    target: Target | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    cmd: str | None = Field(default=None, max_length=4000)
    schedule: Schedule | None = None
    depends_on: list[Dependency] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    retries: Retries = Field(default_factory=Retries)
    priority: int = Field(default=5, ge=0, le=9)
    assigned_to: str | None = Field(default=None, max_length=200)
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
    description: str | None = Field(default=None, max_length=4000)
    target: Target | None = None
    params: dict[str, Any] | None = None
    cmd: str | None = Field(default=None, max_length=4000)
    schedule: Schedule | None = None
    depends_on: list[Dependency] | None = Field(default=None, max_length=MAX_DEPENDENCIES)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    retries: Retries | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    assigned_to: str | None = Field(default=None, max_length=200)
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
            _check_params_size(value)
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
    priority: int = 5
    assigned_to: str | None = None
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
