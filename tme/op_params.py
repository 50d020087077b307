"""What each op of a task takes: its target, its params (one model per op) and `cmd`.

The task contract (tme/schemas.py) checks a task's shape here: TaskCreate and
TaskUpdate call `validate_task_shape`, which locates every problem at the field it is
in (`params.value`, `target`, `cmd`), as the API's 422 names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tme.protocol import deeper_than
from tme.schema_base import Input, name_check, pattern_schema

if TYPE_CHECKING:
    from tme.schemas import Target

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

POINT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def _point_problem(name: str) -> str:
    return (
        f"{name!r} is no point name: 1 to 64 letters, digits, _ . or -,"
        " starting with a letter or digit"
    )


PointName = Annotated[
    str,
    AfterValidator(name_check(POINT_PATTERN, _point_problem)),
    WithJsonSchema(pattern_schema(POINT_PATTERN)),
]
MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32  # nesting of params and details, as the protocol's results


def located(field: str, value: Any, check: Callable[[], None]) -> None:
    """Run a check of one field from a model validator, its ValueError located there."""
    try:
        check()
    except ValueError as exc:
        raise _refusal((field,), str(exc), value) from None


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


class Expect(Input):
    """A write's physical effect: `point` (a feedback point of the same device) reads
    `value` (default: the value written), give or take `tolerance` (in the point's unit;
    0: exactly), within `within_s` of the write. The agent reads it every 0.2 s."""

    point: PointName
    value: NumberOrBool | None = None
    tolerance: float = Field(default=0, ge=0)
    within_s: float = Field(gt=0, le=86400)


class ModbusWriteParams(Input):
    point: PointName
    value: NumberOrBool
    verify: bool = False
    expect: Expect | None = None


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


def check_params_size(params: dict[str, Any]) -> None:
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
    located("params", params, lambda: check_params_size(params))
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
