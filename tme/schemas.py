"""The task contract shared by the REST API, the SDK, the CLI and the docs.

Field names follow ../DESIGN ("A task, as the API takes it"): extend them, never
rename them. Every input model refuses unknown fields and bounds its sizes, so a
bad request is answered with a 422 that names the field and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
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
]
OPS: tuple[str, ...] = get_args(Op)
MACHINE_OPS = frozenset(OPS) - {"external"}
# Ops that act on a device through a driver, so the target must name the device.
DEVICE_OPS = frozenset(
    {"modbus.read", "modbus.write", "serial.command", "device.stop", "device.resume"}
)

# Names travel in MQTT topics and AMQP routing keys: no wildcards, separators or spaces.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
PointName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32  # nesting of params and details, as the protocol's results
MAX_DEPENDENCIES = 50
MAX_BATCH_TASKS = 500  # tasks per POST /api/v1/tasks/batch


class Input(BaseModel):
    """Base of every request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
    return checked.model_dump(exclude_none=True)


def _refusal(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    detail: InitErrorDetails = {
        "type": PydanticCustomError("value_error", "{reason}", {"reason": message}),
        "loc": loc,
        "input": value,
    }
    return ValidationError.from_exception_data("task", [detail])


class TaskCreate(Input):
    name: str = Field(min_length=1, max_length=200)
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

    name: str | None = Field(default=None, min_length=1, max_length=200)
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


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


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


class SitePublic(Output):
    name: str
    last_seen: datetime | None = None
    agents: int = 0
    agents_online: int = 0


class AgentPublic(Output):
    site: str
    name: str
    role: str = "agent"
    online: bool
    last_seen: datetime | None = None
    state_changed_at: datetime | None = None
    # A gateway's last heartbeat: heartbeat_s, mqtt_connected, consuming,
    # commands_pending, commands_unanswered, events_waiting, journal_failing, and
    # received_at (when the controller got it). None for agents.
    status: dict[str, Any] | None = None

    def status_line(self) -> str:
        """A gateway's last heartbeat in a few words ("" without one)."""
        status = self.status
        if not status:
            return ""
        words = [
            "MQTT up" if status.get("mqtt_connected") else "MQTT DOWN",
            "consuming" if status.get("consuming") else "NOT CONSUMING",
            f"{status.get('commands_pending', 0)} held",
            f"{status.get('commands_unanswered', 0)} unanswered",
        ]
        if status.get("events_waiting"):
            words.append(f"{status['events_waiting']} events waiting")
        if status.get("journal_failing"):
            words.append("JOURNAL FAILING")
        return ", ".join(words)


class ArgPublic(Output):
    """One argument of a serial command, with the limits the agent enforces on it: a
    number within min..max, or text that is one of `choices` or matches `pattern` as a
    whole (with neither, short free text of letters, digits, space and _ . + -)."""

    model_config = ConfigDict(extra="allow", from_attributes=True)

    type: str | None = None  # int, float, str or bool
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    pattern: str | None = None


class InterlockPublic(Output):
    """A change allowed only while a point of this device or another of its agent reads
    below, above or equal to a limit; the agent reads it just before each such change."""

    model_config = ConfigDict(extra="allow", from_attributes=True)

    device: str
    point: str
    below: float | None = None
    above: float | None = None
    equals: bool | float | None = None
    why: str = ""

    def text(self) -> str:
        """ "tank.level below 95 (tank nearly full)" """
        condition, shown = "?", "?"  # an interlock of a form this controller does not know
        for name in ("below", "above", "equals"):
            limit = getattr(self, name)
            if limit is not None:
                condition, shown = name, _limit_text(limit)
                break
        why = f" ({self.why})" if self.why else ""
        return f"{self.device}.{self.point} {condition} {shown}{why}"


class PointPublic(Output):
    """A device point or command as its profile describes it (addresses are not exposed)."""

    model_config = ConfigDict(extra="allow", from_attributes=True)

    name: str
    kind: str = "point"  # point (a register or coil) or command (a serial command)
    type: str | None = None
    unit: str | None = None
    access: str | None = None
    min: float | None = None
    max: float | None = None
    # A command's arguments in order ([] when it takes none); None for a point, and for
    # a command of an agent that does not publish them (older than this field): unknown.
    args: list[ArgPublic] | None = None
    # A write may move the point at most this far from the value it holds (None: any).
    max_step: float | None = None
    # A value always allowed past the interlocks and the step limit (stopping).
    safe_value: bool | float | None = None
    # What must hold, read just before a change ([]: nothing, or an agent too old to say).
    interlocks: list[InterlockPublic] = Field(default_factory=list)

    @field_validator("args", "max_step", "safe_value", mode="wrap")
    @classmethod
    def _args_as_known(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """What this controller cannot read (an agent of another version) is unknown,
        not a reason to fail the whole fleet answer."""
        try:
            return handler(value)
        except ValidationError:
            return None

    @field_validator("interlocks", mode="wrap")
    @classmethod
    def _interlocks_as_known(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Interlocks this controller cannot read are left out of what it shows, with a
        stand-in saying so: an agent that has them still checks them."""
        try:
            return handler(value or [])
        except ValidationError:
            return [InterlockPublic(device="?", point="?", why="interlocks in an unknown form")]

    def limits(self) -> str:
        """The limits in a few words: "0..3000" for a point (", step 600, safe 0" when
        it has them), "float 0..30" or "str ON|OFF" per argument for a command ("" without
        any). Its interlocks are `needs()`."""
        if self.kind != "command":
            text = _range_text(self.min, self.max)
        elif self.args is None:
            text = "args unknown"  # an agent that does not publish them
        else:
            text = ", ".join(_arg_text(arg) for arg in self.args)
        guards = [text] if text else []
        if self.max_step is not None:
            guards.append(f"step {_number_text(self.max_step)}")
        if self.safe_value is not None:
            guards.append(f"safe {_limit_text(self.safe_value)}")
        return ", ".join(guards)

    def needs(self) -> str:
        """What its interlocks need, "tank1.level below 95 (why) and ..." ("": none)."""
        return " and ".join(interlock.text() for interlock in self.interlocks)


def _range_text(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    return f"{_number_text(low)}..{_number_text(high)}"


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _limit_text(value: bool | float) -> str:
    return str(value).lower() if isinstance(value, bool) else _number_text(value)


def _arg_text(arg: ArgPublic) -> str:
    if arg.choices is not None:
        limit = "|".join(arg.choices)
    elif arg.pattern is not None:
        limit = f"/{arg.pattern}/"
    else:
        limit = _range_text(arg.min, arg.max)
    return f"{arg.type or '?'} {limit}".strip()


class DeviceStop(Input):
    """POST /api/v1/devices/{device}/stop: why it is stopped (shown with every run it
    cancels and in the stop task's result)."""

    reason: str = Field(min_length=1, max_length=200)


class DeviceStopped(Output):
    """What a stop did: the task that stops the device (its run writes the safe values at
    the agent) and the runs of the device it canceled."""

    task_id: int
    run_id: str | None
    canceled_runs: list[str]


class DeviceLockout(Output):
    """A device locked out at its agent (`tme agent lock`): who, why and since when."""

    by: str
    reason: str
    at: str


class DeviceLink(Output):
    """Whether the device answered its agent's last operation: `ok` (it answered, a
    refusal such as a Modbus exception included) or `down` (no connection, no answer in
    time), since when, and for `down` the error that began it."""

    state: Literal["ok", "down"]
    since: str
    error: str = ""


class DevicePublic(Output):
    site: str
    agent: str
    name: str
    profile: str = ""
    points: list[PointPublic] = Field(default_factory=list)
    # Set while the device is locked out at its agent: it refuses whatever would change
    # the device (writes, serial commands that are not read-only); reads still run.
    lockout: DeviceLockout | None = None
    # Stopped (POST .../stop) and latched at its agent until resumed: by, reason, at.
    stopped: DeviceLockout | None = None
    # As its agent last said (null: no operation has found out since the agent started).
    link: DeviceLink | None = None
    updated_at: datetime | None = None


class TriggerFired(Output):
    """The answer to firing a named trigger: the runs it started, one per bound task."""

    trigger: str
    runs: list[RunPublic] = Field(default_factory=list)


class PointValue(Output):
    """A device point's latest known value, from the newest succeeded run that read it."""

    name: str
    kind: str = "point"  # point or command (a serial command's reply)
    value: Any = None  # None: no succeeded run has read it yet
    unit: str | None = None
    at: datetime | None = None  # when that run finished
    run_id: str | None = None
    task_id: int | None = None
    op: str | None = None


class DeviceValues(Output):
    """GET /api/v1/devices/{device}/values: each point of one device with its latest value."""

    site: str
    agent: str
    name: str
    points: list[PointValue] = Field(default_factory=list)
