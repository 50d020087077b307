"""Early feedback on a machine task, from the fleet as its agents published it.

A task for a device whose agent has published it (GET /api/v1/devices) is checked
when it is created, and when a change touches its target or params, with the safety
envelope's own rules (tme.drivers.envelope) as far as the published profile tells
them: a device the agent does not have, an unknown point or serial command, a write
to a read-only point, a value or an argument outside its limits: 422 naming the
field. What needs the profile's addresses or encoding (a value its register type
cannot hold, a scaled value's rounding) is left to the agent, which checks every
command again whatever the controller let through: a profile may change, and the
agent's is the one in force. An agent that does not publish a command's arguments
(older than that) has them checked by the agent alone.

A target the controller has never heard of is not refused: agents and gateways may
be provisioned after their tasks. The answer carries a warning instead (the task's
`warnings`), and the run waits for the agent until its queue timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from sqlalchemy import BindParameter, bindparam, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tme.controller.services.task_checks import field_error
from tme.controller.store.models import Agent, Device, Site
from tme.controller.store.rows import table_of
from tme.drivers.envelope import check_command_args, check_point_limits
from tme.drivers.profile import (
    ARG_TYPES,
    POINT_TYPES,
    ArgSpec,
    CommandSpec,
    DeviceProfile,
    PointSpec,
)
from tme.errors import EnvelopeViolation, ValidationError
from tme.names import did_you_mean
from tme.schemas import CHECK_OP, DEVICE_OPS, MACHINE_OPS, Target

Pair = tuple[str, str]  # site, agent
ANY_ONE_LINE = ".*"  # what the controller lets through of a text argument with a pattern
SHOWN_NAMES = 20  # names listed when none is close: enough to spot one, short enough to read


class PublishedDevice(Protocol):
    """A device as its agent published it: the columns of Device these checks read."""

    site: str
    agent: str
    name: str
    profile: str
    points: list[dict[str, Any]]
    lockout: dict[str, str] | None
    stopped: dict[str, str] | None
    link: dict[str, str] | None


@dataclass
class FleetView:
    """What the fleet tables say of the agents some tasks target."""

    published: dict[Pair, dict[str, PublishedDevice]] = field(default_factory=dict)
    seen: set[Pair] = field(default_factory=set)  # agents that ever reported
    sites: set[str] = field(default_factory=set)  # the sites seen of agents that were not
    site_agents: dict[str, list[str]] = field(default_factory=dict)  # of those sites


# Built once, read as plain rows: this runs in every create, inside its transaction.
DEVICES, AGENTS = table_of(Device), table_of(Agent)
PAIRS: BindParameter[list[Pair]] = bindparam("pairs", expanding=True)
DEVICE_COLUMNS = (
    DEVICES.c.site,
    DEVICES.c.agent,
    DEVICES.c.name,
    DEVICES.c.profile,
    DEVICES.c.points,
    DEVICES.c.lockout,
    DEVICES.c.stopped,
    DEVICES.c.link,
)
PUBLISHED = sa_select(*DEVICE_COLUMNS).where(tuple_(DEVICES.c.site, DEVICES.c.agent).in_(PAIRS))
AGENTS_SEEN = sa_select(AGENTS.c.site, AGENTS.c.name).where(
    AGENTS.c.role == "agent", tuple_(AGENTS.c.site, AGENTS.c.name).in_(PAIRS)
)
# The same for the one agent of a single create: expanding a list of pairs into the
# statement cost a create a tenth of its time.
SITE: BindParameter[str] = bindparam("site")
AGENT: BindParameter[str] = bindparam("agent")
PUBLISHED_ONE = sa_select(*DEVICE_COLUMNS).where(DEVICES.c.site == SITE, DEVICES.c.agent == AGENT)
AGENT_SEEN_ONE = sa_select(AGENTS.c.site, AGENTS.c.name).where(
    AGENTS.c.role == "agent", AGENTS.c.site == SITE, AGENTS.c.name == AGENT
)


def load_view(session: Session, targets: Iterable[tuple[str, Target | None]]) -> FleetView:
    """The fleet rows the (op, target) pairs need: one query when every target agent
    has published devices, more only for agents never seen."""
    pairs = {
        (target.site, target.agent)
        for op, target in targets
        if op in MACHINE_OPS and target is not None and target.agent is not None
    }
    view = FleetView()
    if not pairs:
        return view
    for device in _rows(session, PUBLISHED, PUBLISHED_ONE, pairs):
        view.published.setdefault((device.site, device.agent), {})[device.name] = device
    view.seen = set(view.published)
    unseen = pairs - view.seen
    if unseen:
        found = _rows(session, AGENTS_SEEN, AGENT_SEEN_ONE, unseen)
        view.seen |= {(site, name) for site, name in found}
    unseen -= view.seen
    if unseen:
        names = {site for site, _ in unseen}
        view.sites = set(session.exec(select(Site.name).where(col(Site.name).in_(names))))
        at_sites = select(Agent.site, Agent.name).where(
            Agent.role == "agent", col(Agent.site).in_(names)
        )
        for site, name in session.exec(at_sites.order_by(col(Agent.name))):
            view.site_agents.setdefault(site, []).append(name)
    return view


def _rows(session: Session, many: Any, one: Any, pairs: set[Pair]) -> Any:
    """The rows of `many` for these (site, agent) pairs; of `one` for a single pair."""
    if len(pairs) == 1:
        ((site, agent),) = pairs
        return session.execute(one, {"site": site, "agent": agent})
    return session.execute(many, {"pairs": sorted(pairs)})


def check_task(
    view: FleetView,
    op: str,
    target: Target | None,
    params: dict[str, Any],
    params_at: str = "params",
) -> list[str]:
    """Refuse (422 naming the field) what the target agent's published devices show
    the agent would refuse; return the warnings for what cannot be checked. A check
    (device.check) is checked as the op it checks, whose params are its params.params;
    `params_at` is where `params` are in the request, which the errors name."""
    if op == CHECK_OP:
        inner_op, inner = str(params.get("op")), dict(params.get("params") or {})
        return check_task(view, inner_op, target, inner, f"{params_at}.params")
    if op not in MACHINE_OPS or target is None or target.agent is None:
        return []
    pair = (target.site, target.agent)
    if pair not in view.seen:
        return [_never_seen(view, target.site, target.agent)]
    if op not in DEVICE_OPS or target.device is None:
        return []
    devices = view.published.get(pair)
    if not devices:
        return [
            f"agent {target.agent!r} at site {target.site!r} has published no devices: "
            f"device {target.device!r} could not be checked here (the agent checks it)"
        ]
    device = devices.get(target.device)
    if device is None:
        where = f"agent {target.agent!r} at site {target.site!r}"
        _refuse("target.device", f"{where} has no device", target.device, list(devices))
    else:
        check = DeviceCheck(device, params_at)
        check.check(op, params)
        noticed = []
        if device.lockout is not None and check.changes(op, params):
            noticed.append(check.locked_out(device.lockout))
        if device.stopped is not None and check.changes(op, params) and op != "device.stop":
            noticed.append(check.stopped(device.stopped))
        if isinstance(device.link, dict) and device.link.get("state") == "down":
            noticed.append(check.not_answering(device.link))
        return noticed
    return []


def _never_seen(view: FleetView, site: str, agent: str) -> str:
    if site not in view.sites:
        # no names of other sites: they may be outside the caller's grant
        return (
            f"site {site!r} has never been seen (no gateway or agent of it has reported): "
            f"the run waits for agent {agent!r} until its queue timeout"
        )
    known = view.site_agents.get(site, [])
    hint = did_you_mean(agent, known) or (f"; its agents: {_listed(known)}" if known else "")
    return (
        f"agent {agent!r} has never been seen at site {site!r}: the run waits for it "
        f"until its queue timeout{hint}"
    )


class DeviceCheck:
    """One published device, and the envelope's checks of a task's params against it
    (found at `params_at` in the request: "params", a check's "params.params")."""

    def __init__(self, device: PublishedDevice, params_at: str = "params") -> None:
        self.device = device
        self.params_at = params_at
        rows = [row for row in device.points if isinstance(row, dict) and "name" in row]
        self.points = {str(r["name"]): r for r in rows if r.get("kind", "point") == "point"}
        self.commands = {str(r["name"]): r for r in rows if r.get("kind") == "command"}
        self.where = f"device {device.name!r} of agent {device.agent!r} at site {device.site!r}"

    def check(self, op: str, params: dict[str, Any]) -> None:
        if op == "modbus.read":
            self._check_read(params)
        elif op == "modbus.write":
            self._check_write(params)
        elif op == "serial.command":
            self._check_command(params)
        elif op == "device.stop":
            self._check_stop()

    def changes(self, op: str, params: dict[str, Any]) -> bool:
        """Whether the task could change the device: a write, a stop, or a serial command
        not published as read-only (the agent's lockout refuses these)."""
        if op != "serial.command":
            return op in ("modbus.write", "device.stop")
        command = self.commands.get(str(params.get("command")))
        return command is None or command.get("access") != "r"

    def locked_out(self, lockout: dict[str, str]) -> str:
        by, reason, at = (lockout.get(k, "unknown") for k in ("by", "reason", "at"))
        return (
            f"{self.where} is locked out at its agent by {by} since {at}: {reason}; the agent"
            f" refuses this task's runs until the device is unlocked there (tme agent unlock)"
        )

    def stopped(self, stop: dict[str, str]) -> str:
        by, reason, at = (stop.get(k, "unknown") for k in ("by", "reason", "at"))
        return (
            f"{self.where} was stopped by {by} at {at}: {reason}; its agent refuses this"
            " task's runs until the device is resumed (tme device resume)"
        )

    def not_answering(self, link: dict[str, str]) -> str:
        since, error = link.get("since", "unknown"), link.get("error", "")
        return (
            f"{self.where} did not answer its agent's last operation (since {since}: {error});"
            " its runs may fail until it answers again"
        )

    def _check_read(self, params: dict[str, Any]) -> None:
        if "points" in params:
            for index, name in enumerate(params["points"]):
                self._point_row(name, f"{self.params_at}.points.{index}")
        elif "point" in params:
            self._point_row(params["point"], f"{self.params_at}.point")

    def _check_write(self, params: dict[str, Any]) -> None:
        name = params["point"]
        spec = _point_spec(self._point_row(name, f"{self.params_at}.point"))
        if isinstance(params.get("expect"), dict):
            self._check_expect(params["expect"], params["value"])
        if spec is None:
            return  # a row this controller cannot read (another agent version): the agent checks
        try:
            check_point_limits(spec, name, params["value"])
        except EnvelopeViolation as exc:
            wrong = "point" if exc.details["reason"] == "read_only" else "value"
            self._refused(f"{self.params_at}.{wrong}", exc)

    def _check_expect(self, expect: dict[str, Any], written: Any) -> None:
        """params.expect: a point of the device (every point reads), a value of its type
        (the value written when none is given), a tolerance only for a number."""
        at = f"{self.params_at}.expect"
        name = expect["point"]
        kind = self._point_row(name, f"{at}.point").get("type")
        if kind not in POINT_TYPES:
            return  # a row this controller cannot read: the agent checks
        given = "value" in expect
        value = expect["value"] if given else written
        if kind == "bool" and not isinstance(value, bool):
            said = (
                f"not {value!r}" if given else f"give expect.value, the value written is {value!r}"
            )
            self._refuse_expect(f"{at}.value", f"{name} reads true or false: {said}")
        if kind != "bool" and isinstance(value, bool):
            self._refuse_expect(f"{at}.value", f"{name} reads a number, not {str(value).lower()}")
        if kind == "bool" and expect.get("tolerance", 0) != 0:
            self._refuse_expect(
                f"{at}.tolerance", f"{name} reads true or false: it is matched exactly"
            )

    def _refuse_expect(self, where: str, problem: str) -> NoReturn:
        message = f"{problem} ({self.where}, as the agent published it)"
        raise ValidationError(
            f"invalid request: {where}: {message}", field_errors=[field_error(where, message)]
        )

    def _check_command(self, params: dict[str, Any]) -> None:
        name = params["command"]
        if name not in self.commands:
            other = " (a point: use op modbus.read or modbus.write)" if name in self.points else ""
            has = f"{self.where} has no serial command"
            _refuse(f"{self.params_at}.command", has, name, list(self.commands), other)
        specs = _arg_specs(self.commands[name].get("args"))
        if specs is None:
            return  # not published (an older agent) or unreadable: the agent checks them
        profile = DeviceProfile(
            name=self.device.profile, commands={name: CommandSpec(request="", args=specs)}
        )
        try:
            check_command_args(profile, name, list(params.get("args", [])))
        except EnvelopeViolation as exc:
            arg = exc.details.get("arg")
            where = f"{self.params_at}.args" + ("" if arg is None else f".{arg}")
            self._refused(where, exc)

    def _check_stop(self) -> None:
        """A stop writes the profile's safe values: a device published without any (and
        an agent older than stops, which publishes none) would have nothing to write."""
        if has_safe_value(self.points.values()):
            return
        message = (
            f"{self.where} has no point with a safe_value in its profile (profile"
            f" {self.device.profile!r}, as the agent published it): a stop would have"
            " nothing to write; give its points safe_value (docs/configuration.md)"
        )
        raise ValidationError(
            f"invalid request: target.device: {message}",
            field_errors=[field_error("target.device", message)],
        )

    def _point_row(self, name: str, where: str) -> dict[str, Any]:
        row = self.points.get(name)
        if row is None:
            other = " (a serial command: use op serial.command)" if name in self.commands else ""
            _refuse(where, f"{self.where} has no point", name, list(self.points), other)
        return row

    def _refused(self, where: str, exc: EnvelopeViolation) -> NoReturn:
        profile = f"profile {self.device.profile!r} of " if self.device.profile else ""
        message = f"{exc.message} ({profile}{self.where}, as the agent published it)"
        raise ValidationError(
            f"invalid request: {where}: {message}", field_errors=[field_error(where, message)]
        )


def _refuse(where: str, has_no: str, name: str, known: Sequence[str], note: str = "") -> NoReturn:
    """A 422 for an unknown name, with the close ones (or all, when none is close)."""
    hint = did_you_mean(name, known)
    if not hint:
        hint = f"; it has {_listed(known)}" if known else "; it has none"
    message = f"{has_no} {name!r}{note}{hint}"
    raise ValidationError(
        f"invalid request: {where}: {message}", field_errors=[field_error(where, message)]
    )


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


# --- published rows back into the envelope's specs --------------------------------
# Rows come from agents of any version: a row this controller cannot read is not
# checked here (None), never a reason to refuse a task or to fail the request.


class _Unreadable(Exception):
    pass


def _limit(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unreadable
    return float(value)


def _point_spec(row: dict[str, Any]) -> PointSpec | None:
    kind = row.get("type")
    if kind not in POINT_TYPES:
        return None
    try:
        low, high = _limit(row.get("min")), _limit(row.get("max"))
    except _Unreadable:
        return None
    return PointSpec(
        address=0,  # not published, not needed for these checks
        table="coil" if kind == "bool" else "holding_register",
        type=kind,
        access="rw" if row.get("access") == "rw" else "r",
        min=low,
        max=high,
    )


def _arg_specs(rows: Any) -> list[ArgSpec] | None:
    if not isinstance(rows, list):
        return None
    try:
        return [_arg_spec(row) for row in rows]
    except _Unreadable:
        return None


def _arg_spec(row: Any) -> ArgSpec:
    if not isinstance(row, dict) or row.get("type") not in ARG_TYPES:
        raise _Unreadable
    choices, pattern = row.get("choices"), row.get("pattern")
    if choices is not None and not (
        isinstance(choices, list) and all(isinstance(c, str) for c in choices)
    ):
        raise _Unreadable
    if pattern is not None and not isinstance(pattern, str):
        raise _Unreadable
    return ArgSpec(
        type=row["type"],
        min=_limit(row.get("min")),
        max=_limit(row.get("max")),
        choices=choices,
        # An agent's pattern is matched by the agent alone: here any text of one line
        # passes (the agent refuses what its pattern does not match). A regular
        # expression an agent published is never run in the controller, where a
        # pathological one could hold a request thread for as long as it backtracks.
        pattern=ANY_ONE_LINE if pattern is not None else None,
    )


NO_SAFE_VALUE = "no point with a safe_value in its profile: a stop would write nothing"


def has_safe_value(points: Iterable[Any]) -> bool:
    """Whether a device's points as its agent published them give a stop something to
    write (a point with a safe_value)."""
    return any(isinstance(p, dict) and p.get("safe_value") is not None for p in points)
