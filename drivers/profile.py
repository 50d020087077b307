"""Device profiles: what a machine exposes, and the safety envelope around it.

A profile is YAML. It names each point (a register or coil) or serial command,
with its type, unit, scale and the range a write must stay in. The agent checks
every write against the profile before anything reaches the bus; the drivers
check again as a second line of defence.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tme.errors import ConfigError, EnvelopeViolation

Table = Literal["coil", "discrete_input", "input_register", "holding_register"]
PointType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]
ArgType = Literal["int", "float", "str", "bool"]

# Raw limits of each register type: a scaled value must still fit in its registers.
RAW_LIMITS: dict[str, tuple[float, float]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4028234e38, 3.4028234e38),
}
BIT_TABLES = {"coil", "discrete_input"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointSpec(_Strict):
    """One register or coil. `scale` turns raw into engineering units: eng = raw * scale."""

    address: int = Field(ge=0, le=65535)
    table: Table
    type: PointType = "uint16"
    unit: str = ""
    scale: float = 1.0
    word_order: Literal["big", "little"] = "big"
    access: Literal["r", "rw"] = "r"
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> PointSpec:
        if (self.table in BIT_TABLES) != (self.type == "bool"):
            raise ValueError(f"type {self.type!r} does not fit table {self.table!r}")
        if self.access == "rw" and self.table in {"discrete_input", "input_register"}:
            raise ValueError(f"a {self.table} cannot be written (access must be 'r')")
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError("scale must be a finite non-zero number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self

    @property
    def register_count(self) -> int:
        return 2 if self.type in {"int32", "uint32", "float32"} else 1


class ArgSpec(_Strict):
    type: ArgType = "float"
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None


class CommandSpec(_Strict):
    """One serial command: a request template filled with its arguments."""

    request: str
    access: Literal["r", "rw"] = "r"
    args: list[ArgSpec] = []
    parse: Literal["float", "int", "str"] = "str"
    response: str | None = None  # optional regex; its first group (or the whole match) is kept
    unit: str = ""
    description: str = ""


class DeviceProfile(_Strict):
    name: str
    description: str = ""
    unit: int | None = Field(default=None, ge=0, le=247)  # default Modbus unit id, if any
    points: dict[str, PointSpec] = {}
    commands: dict[str, CommandSpec] = {}

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
            }
            for n, c in self.commands.items()
        ]
        return rows


def _field_errors(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


def parse_profile(data: Any, source: str = "<memory>") -> DeviceProfile:
    """Validate a profile mapping; the error names the source and each bad field."""
    try:
        return DeviceProfile.model_validate(data)
    except pydantic.ValidationError as exc:
        first = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ConfigError(
            f"invalid device profile {source}: {_field_errors(exc)}", key=first, source=source
        ) from None


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate one profile file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read device profile {path}: {exc}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"device profile {path} is not valid YAML: {exc}", source=str(path)
        ) from None
    return parse_profile(data, source=str(path))
