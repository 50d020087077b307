"""The fleet in the API's answers: sites, agents and devices as presence reports them
(points with their limits, interlocks, lockout, stop and link), a device's latest
values, and a stop's request and answer. `tme.schemas` re-exports them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from tme.schema_base import Input, Output
from tme.shown_text import Label


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
    # A value always allowed past the interlocks, the step limit and the min interval.
    safe_value: bool | float | None = None
    # Anti-short-cycle: the least seconds between two changes by its agent (None: any).
    min_interval_s: float | None = None
    # What must hold, read just before a change ([]: nothing, or an agent too old to say).
    interlocks: list[InterlockPublic] = Field(default_factory=list)

    @field_validator("args", "max_step", "safe_value", "min_interval_s", mode="wrap")
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
        """The limits in a few words: "0..3000" for a point (", step 600, safe 0,
        min interval 300 s" when it has them), "float 0..30" or "str ON|OFF" per
        argument for a command ("" without any). Its interlocks are `needs()`."""
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
        if self.min_interval_s is not None:
            guards.append(f"min interval {_number_text(self.min_interval_s)} s")
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

    # One line, as it shows beside each run it cancels: a control character (a NUL, which
    # the stop task's description cannot store) or a bidirectional override is refused
    # naming `reason`, where a NUL's 422 named the `description` the caller never sent.
    reason: Label = Field(min_length=1, max_length=200)


class DeviceStopped(Output):
    """What a stop did: the task that stops the device (its run writes the safe values at
    the agent) and the runs of the device it canceled."""

    task_id: int
    run_id: str | None
    canceled_runs: list[str]


class SiteStop(DeviceStop):
    """POST /api/v1/sites/{site}/stop: why its devices are stopped (each device's stop
    keeps it, as a device's stop does)."""


class StoppedDevice(DeviceStopped):
    """One device a site's stop stopped: its stop task and run, the runs it canceled, and
    whether its agent was online (a stop for an agent offline waits for it at most a
    minute, then fails as not delivered: stop that machine another way)."""

    agent: str
    device: str
    agent_online: bool


class NotStoppedDevice(Output):
    """A device of the site a site's stop left alone, and why (no safe value to write)."""

    agent: str
    device: str
    why: str


class SiteStopped(Output):
    """What a site's stop did: every device stopped (a stop each, started in one
    transaction), and those it left alone."""

    site: str
    stopped: list[StoppedDevice]
    not_stopped: list[NotStoppedDevice]


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


class LinkLost(Output):
    """The controller has lost the device's agent (`what`: the agent offline, or every
    gateway of its site) since `since`: the agent, counting for itself, stops the device
    at about `stops_at` (`since` plus its `stop_on_link_loss_s`) unless the link comes
    back first. The agent may have noticed the loss a little before the controller did;
    an agent that is not running (its process ended, its computer off) stops nothing,
    and the controller cannot tell it from one cut off."""

    since: datetime
    stops_at: datetime
    what: str

    def line(self) -> str:
        """In a few words, as `tme device list` and the Fleet page say it."""
        return (
            f"{self.what} since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: its"
            f" agent, if running, stops it at about {self.stops_at.astimezone(UTC):%H:%M:%S}"
            " UTC unless the link returns first"
        )


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
    # Its agent stops it on its own (safe values, latched like a stop) after this many
    # seconds without the link to the controller; null: it does not.
    stop_on_link_loss_s: float | None = None
    # Set while the controller has lost its agent, for a device with stop_on_link_loss_s
    # that is not stopped yet: when the agent stops it unless the link returns first.
    link_lost: LinkLost | None = None
    updated_at: datetime | None = None


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
    # Whether the value was read from the device (true) or is what a stop wrote to it,
    # which the device could not read back (false: it was told, nothing read it since);
    # None while there is no value.
    read: bool | None = None
    # The device was stopped after this value was seen (by its agent on link loss, whose
    # stop has no run here to read): its safe values were written since, so the machine
    # may no longer hold it.
    before_stop: bool = False

    def shown(self) -> str:
        """The value as `tme device values` and the Fleet page show it ("-": none yet);
        one that was written and not read back, or seen before the device's stop, says so."""
        if self.value is None:
            return "-"
        if self.before_stop:
            return f"{self.value} (before its stop)"
        return f"{self.value} (written, not read back)" if self.read is False else str(self.value)


class DeviceValues(Output):
    """GET /api/v1/devices/{device}/values: each point of one device with its latest value."""

    site: str
    agent: str
    name: str
    points: list[PointValue] = Field(default_factory=list)
