"""Device profiles: what a machine exposes, and the safety envelope around it.

A profile is YAML. It names each point (a register or coil) or serial command,
with its type, unit, scale and the range a write must stay in. The agent checks
every write against the profile before anything reaches the bus; the drivers
check again as a second line of defence.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tme import yaml_load
from tme.drivers.fields import Fields, Problems, join
from tme.errors import ConfigError, EnvelopeViolation, yaml_problem

Table = Literal["coil", "discrete_input", "input_register", "holding_register"]
PointType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]
ArgType = Literal["int", "float", "str", "bool"]
TABLES = ("coil", "discrete_input", "input_register", "holding_register")
POINT_TYPES = ("bool", "int16", "uint16", "int32", "uint32", "float32")
ARG_TYPES = ("int", "float", "str", "bool")
ACCESS = ("r", "rw")

# Raw limits of each register type: a scaled value must still fit in its registers.
RAW_LIMITS: dict[str, tuple[float, float]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4028234e38, 3.4028234e38),
}
BIT_TABLES = {"coil", "discrete_input"}
# The longest min_interval_s: a day. Seconds, not milliseconds: 300000 meant as 5 min
# would hold a pump for 3 days; a longer pause is a lockout's job (`tme agent lock`).
MAX_INTERVAL_S = 86400.0


@dataclass(frozen=True)
class PointSpec:
    """One register or coil. `scale` turns raw into engineering units: eng = raw * scale."""

    address: int
    table: Table
    type: PointType = "uint16"
    unit: str = ""
    scale: float = 1.0
    word_order: Literal["big", "little"] = "big"
    access: Literal["r", "rw"] = "r"
    min: float | None = None
    max: float | None = None
    description: str = ""
    # The largest change one write may make, from the value the device holds just before
    # it (read under the bus lock): a setpoint moves in steps, never jumps.
    max_step: float | None = None
    # A value always allowed past interlocks, the step limit and the min interval (0 rpm:
    # stopping is never refused); it must itself be inside min..max.
    safe_value: float | bool | None = None
    # Anti-short-cycle: the least time, in seconds, between two changes of the point by
    # its agent (a pump's drive allows a start every 5 minutes: `run` gets 300).
    min_interval_s: float | None = None

    @property
    def register_count(self) -> int:
        return 2 if self.type in {"int32", "uint32", "float32"} else 1


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a serial command. A `str` argument takes one of `choices`, or
    text that matches `pattern` as a whole, or else only free text that cannot start
    another command (see tme.drivers.envelope.FREE_TEXT_CHARACTERS)."""

    type: ArgType = "float"
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    pattern: str | None = None  # a regular expression the whole value must match


@dataclass(frozen=True)
class CommandSpec:
    """One serial command: a request template filled with its arguments."""

    request: str
    access: Literal["r", "rw"] = "r"
    args: list[ArgSpec] = field(default_factory=list)
    parse: Literal["float", "int", "str"] = "str"
    response: str | None = None  # optional regex; its first group (or the whole match) is kept
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str = ""
    unit: int | None = None  # default Modbus unit id, if any (0..247)
    points: dict[str, PointSpec] = field(default_factory=dict)
    commands: dict[str, CommandSpec] = field(default_factory=dict)

    def point(self, name: str) -> PointSpec:
        try:
            return self.points[name]
        except KeyError:
            raise EnvelopeViolation(
                f"unknown point {name!r} on device profile {self.name!r}",
                details={"reason": "unknown_point", "point": name},
            ) from None

    def check_write(self, point_name: str, value: Any) -> float | int | bool:
        """Return the engineering value if the profile allows writing it, else raise."""
        from tme.drivers.envelope import check_point_write

        return check_point_write(self, point_name, value)

    def check_command(self, name: str, args: list[Any]) -> list[Any]:
        """Return the validated arguments of a serial command, else raise."""
        from tme.drivers.envelope import check_command_args

        return check_command_args(self, name, args)

    def public_points(self) -> list[dict[str, Any]]:
        """Describe points and commands for the fleet API (no addresses: those stay at the edge)."""
        rows: list[dict[str, Any]] = [
            {
                "name": n,
                "kind": "point",
                "type": p.type,
                "unit": p.unit,
                "access": p.access,
                "min": p.min,
                "max": p.max,
                **_guards(p),
            }
            for n, p in self.points.items()
        ]
        rows += [
            {
                "name": n,
                "kind": "command",
                "type": c.parse,
                "unit": c.unit,
                "access": c.access,
                "min": None,
                "max": None,
                # each argument's limits, as the envelope applies them (an agent older
                # than this key publishes none: the controller then knows no limits)
                "args": [public_arg(a) for a in c.args],
            }
            for n, c in self.commands.items()
        ]
        return rows


def _guards(spec: PointSpec) -> dict[str, Any]:
    """A point's step limit, safe value and min interval, when it has them (an older
    controller ignores the keys; leaving them out keeps presence the size it was for
    points without)."""
    guards: dict[str, Any] = {}
    if spec.max_step is not None:
        guards["max_step"] = spec.max_step
    if spec.safe_value is not None:
        guards["safe_value"] = spec.safe_value
    if spec.min_interval_s is not None:
        guards["min_interval_s"] = spec.min_interval_s
    return guards


def public_arg(spec: ArgSpec) -> dict[str, Any]:
    """One serial command argument's limits, as the fleet API shows them."""
    return {
        "type": spec.type,
        "min": spec.min,
        "max": spec.max,
        "choices": spec.choices,
        "pattern": spec.pattern,
    }


def parse_profile(data: Any, source: str = "<memory>") -> DeviceProfile:
    """Validate a profile mapping; the error names the source and each bad field."""
    problems = Problems()
    profile = _profile(Fields(data, "", problems))
    if problems:
        raise ConfigError(
            f"invalid device profile {source}: {problems.text()}",
            key=problems.first_key,
            source=source,
        )
    return profile


def _profile(fields: Fields) -> DeviceProfile:
    name = fields.text("name")
    description = fields.text("description", "")
    unit = fields.integer("unit", None, low=0, high=247, optional=True)
    points = {
        str(n): _point(Fields(p, join("points", str(n)), fields.problems))
        for n, p in fields.mapping("points").items()
    }
    commands = {
        str(n): _command(Fields(c, join("commands", str(n)), fields.problems))
        for n, c in fields.mapping("commands").items()
    }
    fields.done()
    return DeviceProfile(name, description, unit, points, commands)


def _point(fields: Fields) -> PointSpec:
    before = len(fields.problems)
    spec = PointSpec(
        address=fields.integer("address", low=0, high=65535),
        table=fields.text("table", choices=TABLES),
        type=fields.text("type", "uint16", choices=POINT_TYPES),
        unit=fields.text("unit", ""),
        scale=fields.number("scale", 1.0),
        word_order=fields.text("word_order", "big", choices=("big", "little")),
        access=fields.text("access", "r", choices=ACCESS),
        min=fields.number("min", None, optional=True),
        max=fields.number("max", None, optional=True),
        description=fields.text("description", ""),
        max_step=fields.number("max_step", None, optional=True),
        safe_value=_safe_value(fields),
        min_interval_s=fields.number("min_interval_s", None, optional=True),
    )
    fields.done()
    if len(fields.problems) == before:
        problem = _inconsistency(spec)
        if problem:
            fields.problems.add(fields.key, problem)
        else:
            _check_guards(spec, fields)
    return spec


def _safe_value(fields: Fields) -> float | bool | None:
    value = fields.raw("safe_value")
    if value is None or isinstance(value, bool):
        return value
    return fields.number("safe_value", None, optional=True)


def _check_guards(spec: PointSpec, fields: Fields) -> None:
    """max_step, safe_value and min_interval_s: only on a point that may be written, and
    fitting it."""
    guards = (
        ("max_step", spec.max_step),
        ("safe_value", spec.safe_value),
        ("min_interval_s", spec.min_interval_s),
    )
    for name, given in guards:
        if given is not None and spec.access != "rw":
            fields.problems.add(join(fields.key, name), "only a point with access 'rw' has one")
            return
    if spec.max_step is not None:
        if spec.type == "bool":
            fields.problems.add(join(fields.key, "max_step"), "a bool point has no step")
        elif spec.max_step <= 0:
            fields.problems.add(join(fields.key, "max_step"), "must be above 0")
    if spec.min_interval_s is not None and not 0 < spec.min_interval_s <= MAX_INTERVAL_S:
        fields.problems.add(
            join(fields.key, "min_interval_s"),
            f"must be above 0 and at most {MAX_INTERVAL_S:g} seconds (a day), got"
            f" {spec.min_interval_s:g}",
        )
    if spec.safe_value is not None:
        from tme.drivers.envelope import check_point_limits

        try:
            check_point_limits(spec, fields.key.rsplit(".", 1)[-1], spec.safe_value)
        except EnvelopeViolation as exc:
            fields.problems.add(join(fields.key, "safe_value"), exc.message)


def _inconsistency(spec: PointSpec) -> str | None:
    """What no single field shows: a point whose fields do not fit together."""
    if (spec.table in BIT_TABLES) != (spec.type == "bool"):
        return f"type {spec.type!r} does not fit table {spec.table!r}"
    if spec.access == "rw" and spec.table in {"discrete_input", "input_register"}:
        return f"a {spec.table} cannot be written (access must be 'r')"
    if spec.scale == 0 or not math.isfinite(spec.scale):
        return "scale must be a finite non-zero number"
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        return "min is greater than max"
    return None


def _command(fields: Fields) -> CommandSpec:
    args = [
        _arg(Fields(a, join(fields.key, f"args.{i}"), fields.problems))
        for i, a in enumerate(fields.sequence("args"))
    ]
    spec = CommandSpec(
        request=fields.text("request"),
        access=fields.text("access", "r", choices=ACCESS),
        args=args,
        parse=fields.text("parse", "str", choices=("float", "int", "str")),
        response=fields.regex("response"),
        unit=fields.text("unit", ""),
        description=fields.text("description", ""),
    )
    fields.done()
    if spec.request is not None:
        problem = _template_problem(spec)
        if problem:
            fields.problems.add(join(fields.key, "request"), problem)
    return spec


# A stand-in of each argument type, to fill a request template once at load.
SAMPLE_ARGS: dict[str, Any] = {"int": 0, "float": 0.0, "str": "x", "bool": True}


def _template_problem(spec: CommandSpec) -> str | None:
    """What is wrong with a request template, which is filled with the command's
    arguments by position ({0}, {1}, ...): a field naming anything else (an attribute,
    an index), one past the arguments, or a template that does not parse would fail
    every run of the command, so it is refused when the profile loads."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(spec.request)]
    except ValueError as exc:
        return f"{spec.request!r} is not a template ({exc}; a literal brace is {{{{ or }}}})"
    for name in fields:
        if name is None or name == "":
            continue
        if not name.isdigit():
            return (
                f"field {{{name}}} of {spec.request!r}: a field is an argument's position"
                " ({0}, {1}, ...), nothing else"
            )
        if int(name) >= len(spec.args):
            return (
                f"field {{{name}}} of {spec.request!r}: the command takes"
                f" {len(spec.args)} argument(s)"
            )
    try:
        spec.request.format(*(SAMPLE_ARGS[arg.type] for arg in spec.args))
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        return f"{spec.request!r} cannot be filled with its arguments: {exc}"
    return None


def _arg(fields: Fields) -> ArgSpec:
    before = len(fields.problems)
    spec = ArgSpec(
        type=fields.text("type", "float", choices=ARG_TYPES),
        min=fields.number("min", None, optional=True),
        max=fields.number("max", None, optional=True),
        choices=fields.texts("choices"),
        pattern=fields.regex("pattern"),
    )
    fields.done()
    if len(fields.problems) == before:
        _limits_that_apply(spec, fields)
    return spec


def _limits_that_apply(spec: ArgSpec, fields: Fields) -> None:
    """A limit the envelope would not apply to this argument's type must not look like
    one: a profile giving it is refused, naming the key."""
    numeric = spec.type in ("int", "float")
    if spec.pattern is not None:
        if spec.type != "str":
            fields.problems.add(join(fields.key, "pattern"), "only a 'str' argument has one")
        elif spec.choices is not None:
            fields.problems.add(join(fields.key, "pattern"), "give choices or pattern, not both")
    if spec.choices is not None and spec.type != "str":
        fields.problems.add(join(fields.key, "choices"), "only a 'str' argument has them")
    for name, limit in (("min", spec.min), ("max", spec.max)):
        if limit is not None and not numeric:
            fields.problems.add(
                join(fields.key, name),
                f"only an 'int' or 'float' argument has one, not {spec.type!r}",
            )


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate one profile file."""
    path = Path(path)
    try:
        data = yaml_load.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read device profile {path}: {exc}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"device profile {path} is not valid YAML {yaml_problem(exc)}", source=str(path)
        ) from None
    return parse_profile(data, source=str(path))
